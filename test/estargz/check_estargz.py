"""Independent eStargz checker (Python's gzip, zlib, tarfile, json): footer, TOC, every chunk.

Usage: python3 check_estargz.py BLOB  -> prints a JSON summary; exits non-zero on any violation.
"""
import gzip, hashlib, io, json, re, struct, sys, tarfile, zlib

blob = open(sys.argv[1], 'rb').read()
foot = blob[-51:]
assert foot[:4] == b'\x1f\x8b\x08\x04', 'footer gzip header'
xlen, = struct.unpack('<H', foot[10:12]); assert xlen == 26, 'XLEN'
assert foot[12:14] == b'SG' and struct.unpack('<H', foot[14:16])[0] == 22, 'SG subfield'
m = re.fullmatch(rb'([0-9a-f]{16})STARGZ', foot[16:38]); assert m, 'offset field'
toc_offset = int(m.group(1), 16)
assert gzip.decompress(foot) == b'', 'footer is an empty gzip member'

# The whole blob is one gzip stream of a tar whose last entry is the TOC.
tf = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)))
members = tf.getmembers()
assert members[-1].name == 'stargz.index.json', members[-1].name
toc_bytes = tf.extractfile(members[-1]).read()
toc = json.loads(toc_bytes)
assert toc['version'] == 1

# The TOC member starts exactly at the footer's offset and holds only the TOC entry.
d = zlib.decompressobj(31)
toc_tar = d.decompress(blob[toc_offset:len(blob) - 51])
assert toc_tar[:17] == b'stargz.index.json', 'TOC member'
assert d.unused_data == b'', 'TOC member ends at the footer'

chunks = 0
files = {}
for e in toc['entries']:
    if e['type'] in ('reg', 'chunk') and 'offset' in e:
        size = e.get('chunkSize') or None
        d = zlib.decompressobj(31)
        data = d.decompress(blob[e['offset']:toc_offset])
        if size is None:
            reg = files[e['name']]['entry'] if e['type'] == 'chunk' else e
            size = reg['size'] - e.get('chunkOffset', 0)
        piece = data[:size]
        assert len(piece) == size, (e['name'], len(piece), size)
        assert 'sha256:' + hashlib.sha256(piece).hexdigest() == e['chunkDigest'], ('chunk digest', e['name'])
        f = files.setdefault(e['name'], {'entry': e, 'data': b''})
        assert e.get('chunkOffset', 0) == len(f['data']), ('chunk order', e['name'])
        f['data'] += piece
        chunks += 1
for name, f in files.items():
    assert 'sha256:' + hashlib.sha256(f['data']).hexdigest() == f['entry']['digest'], ('file digest', name)
    assert len(f['data']) == f['entry']['size'], ('file size', name)

print(json.dumps({
    'tocOffset': toc_offset,
    'tocDigest': 'sha256:' + hashlib.sha256(toc_bytes).hexdigest(),
    'first': toc['entries'][0]['name'],
    'names': [e['name'] for e in toc['entries'] if e['type'] != 'chunk'],
    'chunks': chunks,
    'tarNames': [m.name for m in members],
}))
