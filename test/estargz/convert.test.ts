/**
 * tar → eStargz conversion checked by independent tools: GNU tar extracts the blob to the input
 * tree, Python's gzip/zlib/tarfile parse footer, TOC and every chunk; and by our own reader:
 * files, directories, links, prefetch landmark, chunking.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { EstargzReader, bufferRangeReader, parseFooter, encodeFooter, sha256, type RangeReader } from '@buildcache/estargz';
import { convertFile, noise, run, sourceTree } from './fixtures.js';

const CHECKER = fileURLToPath(new URL('../../estargz/check_estargz.py', import.meta.url));

interface PyReport { tocOffset: number; tocDigest: string; first: string; names: string[]; chunks: number; tarNames: string[] }

/** Counts what is read through a RangeReader. */
function counting(inner: RangeReader): RangeReader & { bytes: number; requests: number } {
  const c = {
    size: inner.size,
    bytes: 0,
    requests: 0,
    readAt(offset: number, length: number) {
      c.bytes += length;
      c.requests++;
      return inner.readAt(offset, length);
    },
  };
  return c;
}

let dir: string;
let tree: { src: string; tarGz: string };
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'estargz-convert-'));
  tree = await sourceTree(dir);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tar to eStargz', () => {
  test('GNU tar extracts the blob to the input tree, and Python parses footer, TOC and every chunk', async () => {
    const { blob, result } = await convertFile(tree.tarGz, { chunkSize: 64 * 1024 });
    const path = join(dir, 'plain.esgz');
    await writeFile(path, blob);
    assert.equal(result.digest, sha256(blob));
    assert.equal(result.size, blob.length);
    const plain = gunzipSync(blob);
    assert.equal(result.diffID, sha256(plain));
    assert.equal(result.uncompressedSize, plain.length);

    const out = join(dir, 'extracted');
    await mkdir(out);
    await run('tar', ['-xzf', path, '-C', out]);
    // same tree (content, modes, links) apart from the landmark and the TOC the format adds
    const { stdout: diff } = await run('diff', ['-r', '--no-dereference', tree.src, out]).catch((e: { stdout: string }) => e);
    assert.deepEqual(diff.trim().split('\n').sort(), [`Only in ${out}: .no.prefetch.landmark`, `Only in ${out}: stargz.index.json`]);
    const { stdout: modes } = await run('sh', ['-c', `cd ${tree.src} && find . -printf '%p %m %l %n\\n' | sort`]);
    const { stdout: modes2 } = await run('sh', ['-c', `cd ${out} && find . -path ./stargz.index.json -prune -o -path ./.no.prefetch.landmark -prune -o -printf '%p %m %l %n\\n' | sort`]);
    assert.equal(modes2, modes);

    const { stdout } = await run('python3', [CHECKER, path]);
    const py = JSON.parse(stdout) as PyReport;
    assert.equal(py.tocOffset, result.tocOffset);
    assert.equal(py.tocDigest, result.tocDigest);
    assert.equal(py.first, '.no.prefetch.landmark');
    assert.equal(py.chunks, 1 /* landmark */ + 1 /* hello */ + Math.ceil(300_000 / 65536) + 1 /* deep */);
    assert.ok(py.names.includes('bin/hard') && py.names.includes('etc/link') && py.names.includes('etc/empty'));
  });

  test('the reader serves files, directories, links and stats, reading only the chunks of the file asked for', async () => {
    const { blob, result } = await convertFile(tree.tarGz, { chunkSize: 64 * 1024 });
    const src = counting(bufferRangeReader(blob));
    const r = await EstargzReader.open(src, { tocDigest: result.tocDigest, name: 'test' });
    assert.equal(src.requests, 1, 'footer and TOC arrive with one range request');
    assert.equal(r.tocDigest, result.tocDigest);
    assert.deepEqual(r.readdir('/'), ['.no.prefetch.landmark', 'a-rather-long-directory-name-that-pushes-the-path', 'bin', 'etc']);
    assert.deepEqual(r.readdir('etc'), ['empty', 'hello.txt', 'link']);
    assert.equal(r.stat('etc/link').linkName, 'hello.txt');
    assert.equal(r.stat('bin/big.bin').size, 300_000);
    assert.equal(r.stat('bin/big.bin').mode, 0o644);
    assert.equal(r.prefetchEnd, 0);
    const before = src.bytes;
    assert.equal((await r.readFile('/etc/hello.txt')).toString(), 'hello world\n');
    assert.ok(src.bytes - before < 2048, `one small file costs ${src.bytes - before} bytes`);
    assert.equal((await r.readFile('bin/hard')).toString(), 'hello world\n');
    assert.equal((await r.readFile('etc/empty')).length, 0);
    const big = await r.readFile('bin/big.bin');
    assert.ok(big.equals(noise(300_000, 7)));
    const deep = `${'a-rather-long-directory-name-that-pushes-the-path/'.repeat(3)}deep.txt`;
    assert.equal((await r.readFile(deep)).toString(), 'deep\n');
  });

  test('prioritized files come first (parents along), then .prefetch.landmark whose offset ends the prefetch range', async () => {
    const { blob, result } = await convertFile(tree.tarGz, { prioritizedFiles: ['etc/hello.txt', '/bin/big.bin'] });
    const path = join(dir, 'prio.esgz');
    await writeFile(path, blob);
    const py = JSON.parse((await run('python3', [CHECKER, path])).stdout) as PyReport;
    assert.deepEqual(py.names.slice(0, 6), ['etc/', 'etc/hello.txt', 'bin/', 'bin/big.bin', '.prefetch.landmark', './']);
    const r = await EstargzReader.open(bufferRangeReader(blob), { tocDigest: result.tocDigest });
    const landmark = r.lookup('.prefetch.landmark')!;
    assert.equal(r.prefetchEnd, landmark.entry.offset);
    const big = r.lookup('bin/big.bin')!;
    assert.ok(big.chunks.every((c) => c.nextOffset <= r.prefetchEnd!), 'prioritized data lies before the landmark');
    await assert.rejects(convertFile(tree.tarGz, { prioritizedFiles: ['no/such/file'] }), { code: 'ERR_INVALID_ARGUMENT' });
    const allowed = await convertFile(tree.tarGz, { prioritizedFiles: ['no/such/file'], allowPrioritizedNotFound: true });
    assert.ok(allowed.blob.length > 0);
  });

  test('re-converting an eStargz blob drops the old TOC and landmark', async () => {
    const first = await convertFile(tree.tarGz);
    const path = join(dir, 'first.esgz');
    await writeFile(path, first.blob);
    const second = await convertFile(path, { prioritizedFiles: ['etc/hello.txt'] });
    await writeFile(join(dir, 'second.esgz'), second.blob);
    const py = JSON.parse((await run('python3', [CHECKER, join(dir, 'second.esgz')])).stdout) as PyReport;
    assert.equal(py.tarNames.filter((n) => n === 'stargz.index.json').length, 1);
    assert.ok(!py.names.includes('.no.prefetch.landmark'));
  });

  test('a legacy 47-byte stargz footer is detected like the 51-byte one', async () => {
    const { blob, result } = await convertFile(tree.tarGz);
    const f = parseFooter(blob.subarray(blob.length - 51))!;
    assert.deepEqual(f, { tocOffset: result.tocOffset, footerSize: 51, legacy: false });
    assert.ok(encodeFooter(result.tocOffset).equals(blob.subarray(blob.length - 51)));
    const legacy = Buffer.alloc(47);
    Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 22, 0]).copy(legacy);
    legacy.write(`${result.tocOffset.toString(16).padStart(16, '0')}STARGZ`, 12, 'latin1');
    Buffer.from([1, 0, 0, 0xff, 0xff]).copy(legacy, 34);
    const old = Buffer.concat([blob.subarray(0, blob.length - 51), legacy]);
    assert.deepEqual(parseFooter(old.subarray(old.length - 51)), { tocOffset: result.tocOffset, footerSize: 47, legacy: true });
    const r = await EstargzReader.open(bufferRangeReader(old), { tocDigest: result.tocDigest });
    assert.equal((await r.readFile('etc/hello.txt')).toString(), 'hello world\n');
    assert.equal(createHash('sha256').update(gunzipSync(old)).digest('hex').length, 64, 'still one valid gzip stream');
  });
});
