/**
 * Bad eStargz input gets a typed error before any file data is served: TOC that is not JSON, a
 * footer pointing outside the blob, a chunk whose digest does not match, TOC names with `..` or
 * absolute, a 100 MB TOC (refused with bounded memory), TOC digest missing or wrong; a tar with a
 * sparse file is refused by the conversion.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { EstargzReader, bufferRangeReader, encodeFooter, sha256 } from '@buildcache/estargz';
import {
  ErrCorruptLayer,
  ErrEstargzChunkDigest,
  ErrEstargzFooter,
  ErrEstargzToc,
  ErrEstargzTocDigest,
  ErrEstargzTocTooLarge,
  ErrEstargzUnsafeEntry,
  ErrEstargzUnverified,
  ErrNotEstargz,
} from '@buildcache/errdefs';
import { convertFile, craftBlob, rewriteToc, sourceTree, tocMember } from './fixtures.js';

const execFileP = promisify(execFile);
let dir: string;
let good: { blob: Buffer; tocDigest: string };
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'estargz-bad-'));
  const { tarGz } = await sourceTree(dir);
  const { blob, result } = await convertFile(tarGz, { chunkSize: 64 * 1024 });
  good = { blob, tocDigest: result.tocDigest };
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open = (blob: Buffer, tocDigest?: string, verify = true): Promise<EstargzReader> =>
  EstargzReader.open(bufferRangeReader(blob), { name: 'sha256:test', verify, ...(tocDigest ? { tocDigest } : {}) });

describe('eStargz bad input', () => {
  test('a blob without a footer is ErrNotEstargz', async () => {
    await assert.rejects(open(gzipSync(Buffer.alloc(4096)), undefined, false), ErrNotEstargz);
  });

  test('a TOC that is not JSON is ErrEstargzToc', async () => {
    const json = Buffer.from('{"version": 1, "entries": [');
    await assert.rejects(open(craftBlob(gzipSync(Buffer.alloc(512)), json), sha256(json)), (err: unknown) => {
      assert.ok(err instanceof ErrEstargzToc);
      assert.match(err.message, /not JSON/);
      return true;
    });
  });

  test('a TOC that is JSON but not a TOC is ErrEstargzToc', async () => {
    for (const doc of ['[]', '{"version":2,"entries":[]}', '{"version":1,"entries":[{"name":"x","type":"weird"}]}', '{"version":1,"entries":[{"name":"x","type":"reg","size":-1}]}']) {
      const json = Buffer.from(doc);
      await assert.rejects(open(craftBlob(gzipSync(Buffer.alloc(512)), json), sha256(json)), ErrEstargzToc, doc);
    }
  });

  test('a footer pointing outside the blob is ErrEstargzFooter', async () => {
    const body = good.blob.subarray(0, good.blob.length - 51);
    await assert.rejects(open(Buffer.concat([body, encodeFooter(good.blob.length * 4)]), good.tocDigest), ErrEstargzFooter);
  });

  test('a TOC member that is not gzip is ErrEstargzToc', async () => {
    const prefix = gzipSync(Buffer.alloc(512));
    const blob = Buffer.concat([prefix, Buffer.from('not gzip at all, just bytes'), encodeFooter(prefix.length)]);
    await assert.rejects(open(blob, undefined, false), ErrEstargzToc);
  });

  test('a chunk whose digest does not match is ErrEstargzChunkDigest when read; other files still read', async () => {
    const { blob, tocDigest } = rewriteToc(good.blob, (toc) => {
      // GNU tar stored bin/hard (sorted first) as the file and etc/hello.txt as its hard link
      const e = toc.entries.find((x) => x.name === 'bin/hard' && x.type === 'reg')!;
      e.chunkDigest = sha256(Buffer.from('something else'));
    });
    const r = await open(blob, tocDigest);
    await assert.rejects(r.readFile('etc/hello.txt'), (err: unknown) => {
      assert.ok(err instanceof ErrEstargzChunkDigest);
      assert.equal(err.details.entry, 'bin/hard');
      return true;
    });
    assert.equal((await r.readFile('bin/big.bin')).length, 300_000);
  });

  test('corrupt chunk bytes are ErrEstargzChunkDigest', async () => {
    const r0 = await open(good.blob, good.tocDigest);
    const node = r0.lookup('bin/big.bin')!;
    const bad = Buffer.from(good.blob);
    const at = node.chunks[1]!.offset + 20;
    bad[at] = bad[at]! ^ 0xff;
    const r = await open(bad, good.tocDigest);
    await assert.rejects(r.readFile('bin/big.bin'), ErrEstargzChunkDigest);
  });

  test('TOC names with .. or absolute are ErrEstargzUnsafeEntry at open', async () => {
    for (const name of ['../etc/passwd', 'a/../../b', '/etc/shadow']) {
      const { blob, tocDigest } = rewriteToc(good.blob, (toc) => {
        toc.entries.push({ name, type: 'symlink', linkName: 'x' });
      });
      await assert.rejects(open(blob, tocDigest), (err: unknown) => {
        assert.ok(err instanceof ErrEstargzUnsafeEntry, name);
        assert.equal(err.details.entry, name);
        return true;
      });
    }
    const { blob, tocDigest } = rewriteToc(good.blob, (toc) => {
      toc.entries.push({ name: 'evil', type: 'hardlink', linkName: '../../outside' });
    });
    await assert.rejects(open(blob, tocDigest), ErrEstargzUnsafeEntry);
  });

  test('a 100 MB TOC is ErrEstargzTocTooLarge, with memory bounded', async () => {
    // 100 MB of JSON compresses to ~100 KB; inflating stops at the limit
    const entry = Buffer.from('{"name":"f","type":"dir"},');
    const count = Math.ceil((100 << 20) / entry.length);
    const json = Buffer.concat([Buffer.from('{"version":1,"entries":['), Buffer.alloc(count * entry.length, entry), Buffer.from('{"name":"g","type":"dir"}]}')]);
    const blob = craftBlob(gzipSync(Buffer.alloc(512)), json);
    const rssBefore = process.memoryUsage().rss;
    await assert.rejects(open(blob, sha256(json), true), ErrEstargzTocTooLarge);
    await assert.rejects(EstargzReader.open(bufferRangeReader(blob), { verify: false, maxTocSize: 1 << 20 }), ErrEstargzTocTooLarge);
    const grew = (process.memoryUsage().rss - rssBefore) / (1 << 20);
    assert.ok(grew < 150, `RSS grew ${grew.toFixed(0)} MiB while refusing the TOC`);
    // a compressed TOC larger than the limit is refused before it is read
    const small = craftBlob(gzipSync(Buffer.alloc(512)), Buffer.from('{}'));
    await assert.rejects(EstargzReader.open(bufferRangeReader(small), { verify: false, maxTocSize: 8 }), ErrEstargzTocTooLarge);
  });

  test('verification: a missing TOC digest is ErrEstargzUnverified unless verify is false; a wrong one ErrEstargzTocDigest', async () => {
    await assert.rejects(open(good.blob), ErrEstargzUnverified);
    await assert.rejects(open(good.blob, sha256(Buffer.from('other'))), ErrEstargzTocDigest);
    const r = await open(good.blob, undefined, false);
    assert.equal((await r.readFile('etc/hello.txt')).toString(), 'hello world\n');
  });

  test('the TOC must be the stargz.index.json entry', async () => {
    const member = tocMember(Buffer.from('{"version":1,"entries":[]}'));
    const renamed = Buffer.from(gzipSync(Buffer.concat([Buffer.from('other.json'), Buffer.alloc(502 + 512 + 1024)])));
    const prefix = gzipSync(Buffer.alloc(512));
    await assert.rejects(open(Buffer.concat([prefix, renamed, encodeFooter(prefix.length)]), undefined, false), ErrEstargzToc);
    assert.ok(member.length > 0);
  });

  test('converting a tar with a sparse file (GNU tar --sparse) is ErrCorruptLayer naming it: its stored payload is not its content', async () => {
    const src = join(dir, 'sparse-src');
    await mkdir(src);
    await execFileP('truncate', ['-s', '4M', join(src, 'holes.img')]);
    await execFileP('sh', ['-c', `printf data >> '${join(src, 'holes.img')}'`]);
    await execFileP('tar', ['-C', src, '--format=posix', '--sparse', '-cf', join(dir, 'sparse.tar'), 'holes.img']);
    await assert.rejects(convertFile(join(dir, 'sparse.tar')), (e: unknown) => e instanceof ErrCorruptLayer && /sparse.*holes\.img/.test(e.message));
  });
});
