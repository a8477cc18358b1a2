/** Tar reader/writer: format details, limits, sparse entries, and GNU tar interoperability in both directions. */
import assert from 'node:assert/strict';
import { mkdir, readFile, readlink, lstat, writeFile, symlink, link } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ErrCorruptLayer } from '@buildcache/errdefs';
import { TarReader, applyLayer, decompress, writeDiff } from '../../src/embedded/archive/index.js';
import type { TarHeader } from '../../src/embedded/archive/index.js';
import { E, buildTar, cleanup, collect, run, snapshotTree, tempDir } from './helpers.js';

after(cleanup);

async function readAll(tar: Buffer): Promise<Array<TarHeader & { body: string }>> {
  const r = new TarReader([tar]);
  const out: Array<TarHeader & { body: string }> = [];
  for (let h = await r.next(); h; h = await r.next()) out.push({ ...h, body: (await r.readBody()).toString() });
  await r.finish();
  return out;
}

describe('tar writer and reader', () => {
  it('round-trips long names (ustar prefix and PAX), long links, xattrs and base-256 numbers', async () => {
    const splitName = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const paxName = 'x'.repeat(300);
    const tar = await buildTar([
      { ...E, name: splitName, type: 'file', body: 'split' },
      { ...E, name: paxName, type: 'file', body: 'pax', xattrs: new Map([['user.a', Buffer.from([0, 1, 255])]]) },
      { ...E, name: 'l', type: 'symlink', linkname: 'y'.repeat(200) },
      { ...E, name: 'big-ids', type: 'file', uid: 0o7777777 + 5, gid: 2 ** 40, mtime: 2 ** 34, body: '' },
    ]);
    const got = await readAll(tar);
    assert.deepEqual(got.map((h) => h.name), [splitName, paxName, 'l', 'big-ids']);
    assert.equal(got[0]!.body, 'split');
    assert.equal(got[1]!.body, 'pax');
    assert.deepEqual(got[1]!.xattrs.get('user.a'), Buffer.from([0, 1, 255]));
    assert.equal(got[2]!.linkname, 'y'.repeat(200));
    assert.equal(got[3]!.uid, 0o7777777 + 5);
    assert.equal(got[3]!.gid, 2 ** 40);
    assert.equal(got[3]!.mtime, 2 ** 34);
    // the uid field of the last header is base-256 (high bit set), not octal
    const hdr = tar.subarray(tar.length - 1024 - 512, tar.length - 1024);
    assert.equal(hdr[108]! & 0x80, 0x80);
  });

  it('encodes sizes over 8 GiB in base-256 and reads them back (header only)', async () => {
    const { TarWriter } = await import('../../src/embedded/archive/index.js');
    const parts: Buffer[] = [];
    const w = new TarWriter((c) => {
      parts.push(Buffer.from(c));
    });
    const size = 9 * 2 ** 30 + 3;
    // a body that claims 9 GiB: only the header is checked, the write is abandoned
    await assert.rejects(w.add({ ...E, name: 'huge', type: 'file', size }, (async function* () {})()));
    await w.flush();
    const header = Buffer.concat(parts).subarray(0, 512);
    assert.equal(header[124]! & 0x80, 0x80);
    const r = new TarReader([header, Buffer.alloc(1024)]);
    const h = await r.next();
    assert.equal(h?.size, size);
  });

  it('refuses a PAX header over 1 MiB, naming the entry', async () => {
    const tar = await buildTar([{ ...E, name: 'victim', type: 'file', body: 'x', xattrs: new Map([['user.big', Buffer.alloc((1 << 20) + 10, 0x61)]]) }]);
    await assert.rejects(readAll(tar), (err: unknown) => err instanceof ErrCorruptLayer && /PAX header/.test(err.message) && /PaxHeader/.test(err.message));
  });

  it('refuses truncated input inside a body and inside a header, and a bad checksum', async () => {
    const tar = await buildTar([{ ...E, name: 'cut', type: 'file', body: 'x'.repeat(2000) }]);
    await assert.rejects(readAll(tar.subarray(0, 1200)), (err: unknown) => err instanceof ErrCorruptLayer && err.details.entry === 'cut');
    await assert.rejects(readAll(tar.subarray(0, 2560 + 100)), ErrCorruptLayer);
    await assert.rejects(readAll(tar.subarray(0, 512 + 2048)), /missing end-of-archive/);
    const bad = Buffer.from(tar);
    bad[0] = 0x41;
    await assert.rejects(readAll(bad), /checksum/);
  });

  it('reads GNU tar output: gnu long names, pax xattrs, hard links, symlinks', async () => {
    const src = await tempDir();
    const long = 'n'.repeat(150);
    await mkdir(join(src, 'dir'));
    await writeFile(join(src, 'dir', long), 'long');
    await writeFile(join(src, 'a'), 'aaa');
    await link(join(src, 'a'), join(src, 'b'));
    await symlink('a', join(src, 's'));
    for (const format of ['gnu', 'pax']) {
      const file = join(await tempDir(), 'x.tar');
      await run('tar', [`--format=${format}`, '-C', src, '--sort=name', '-cf', file, '.']);
      const got = await readAll(await readFile(file));
      const byName = new Map(got.map((h) => [h.name, h]));
      assert.equal(byName.get(`./dir/${long}`)?.body, 'long', format);
      assert.equal(byName.get('./s')?.linkname, 'a');
      assert.equal(byName.get('./b')?.type, 'link');
      assert.equal(byName.get('./b')?.linkname, './a');
    }
  });

  it('GNU tar extracts our output to the same tree', async () => {
    const src = await tempDir();
    await mkdir(join(src, 'd', 'e'), { recursive: true });
    await writeFile(join(src, 'd', 'e', 'f'), 'hello');
    await writeFile(join(src, `${'p'.repeat(200)}`), 'pax');
    await link(join(src, 'd', 'e', 'f'), join(src, 'hl'));
    await symlink('d/e/f', join(src, 'sl'));
    const chunks: Buffer[] = [];
    await writeDiff({ kind: 'trees', upper: src }, (c) => {
      chunks.push(Buffer.from(c));
    });
    const file = join(await tempDir(), 'ours.tar');
    await writeFile(file, Buffer.concat(chunks));
    const dst = await tempDir();
    await run('tar', ['-xpf', file, '-C', dst]);
    assert.deepEqual(await snapshotTree(dst), await snapshotTree(src));
    assert.equal(await readlink(join(dst, 'sl')), 'd/e/f');
    assert.equal((await lstat(join(dst, 'hl'))).ino, (await lstat(join(dst, 'd', 'e', 'f'))).ino);
  });

  it('applies tar -cf and tar -czf output', async () => {
    const src = await tempDir();
    await mkdir(join(src, 'x', 'y'), { recursive: true });
    await writeFile(join(src, 'x', 'y', 'z'), 'zz');
    await writeFile(join(src, 'q'.repeat(180)), 'long');
    await symlink('x/y/z', join(src, 'link'));
    for (const flags of ['-cf', '-czf']) {
      const file = join(await tempDir(), 'layer');
      await run('tar', ['-C', src, flags, file, '.']);
      const dst = await tempDir();
      const data = await readFile(file);
      const res = await applyLayer([data], dst);
      assert.deepEqual(await snapshotTree(dst), await snapshotTree(src), flags);
      const plain = flags === '-cf' ? data : await collect(decompress([data], 'gzip'));
      assert.equal(res.size, plain.length);
    }
  });
});

describe('sparse entries', () => {
  it('every GNU tar sparse format (old GNU, PAX 0.0, 0.1, 1.0): body() gives the content whole, sparseData() the stored runs', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'src'));
    const file = join(dir, 'src', 'f.img');
    await run('truncate', ['-s', String(3 << 20), file]);
    const content = Buffer.alloc(3 << 20);
    for (const [at, text] of [[5, 'abc'], [1 << 20, 'middle'], [(3 << 20) - 4, 'tail']] as const) {
      Buffer.from(text).copy(content, at);
      await run('python3', ['-c', `f = open(${JSON.stringify(file)}, 'r+b'); f.seek(${at}); f.write(b'${text}')`]);
    }
    for (const args of [['--format=gnu'], ['--format=posix'], ['--format=posix', '--sparse-version=0.0'], ['--format=posix', '--sparse-version=0.1']]) {
      await run('tar', ['-C', join(dir, 'src'), ...args, '--sparse', '-cf', join(dir, 'f.tar'), 'f.img']);
      const tar = await readFile(join(dir, 'f.tar'));
      const [h] = await readAll(tar);
      assert.equal(h!.name, 'f.img', args.join(' '));
      assert.equal(h!.size, 3 << 20);
      assert.ok(h!.body === content.toString(), `${args.join(' ')}: content, holes as zeros`);
      const r = new TarReader([tar]);
      const again = (await r.next())!;
      const stored = await collect(r.sparseData());
      const runs = again.sparse!.segments;
      assert.equal(stored.length, runs.filter((_, i) => i % 2 === 1).reduce((a, b) => a + b, 0));
      for (let i = 0, at = 0; i < runs.length; at += runs[i + 1]!, i += 2) {
        assert.ok(stored.subarray(at, at + runs[i + 1]!).equals(content.subarray(runs[i]!, runs[i]! + runs[i + 1]!)), `${args.join(' ')}: run ${i / 2}`);
      }
    }
  });

  it('an old GNU sparse map whose extension blocks never end is ErrCorruptLayer at the extended-header limit', async () => {
    const header = Buffer.alloc(512);
    header.write('f', 0);
    header.write('0000644\0', 100, 'latin1');
    header.write('00000000000\0', 124, 'latin1');
    header[156] = 'S'.charCodeAt(0);
    header.write('ustar  \0', 257, 'latin1');
    header.write('00000001000\0', 483, 'latin1');
    header[482] = 1; // an extension block follows
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const ext = Buffer.alloc(512);
    ext[504] = 1; // and another, forever
    function* blocks(): Generator<Buffer> {
      yield header;
      for (let i = 0; i < 4096; i++) yield ext;
    }
    const r = new TarReader(blocks());
    await assert.rejects(r.next(), (e: unknown) => e instanceof ErrCorruptLayer && /sparse map extension block.*limit/.test(e.message));
  });
});
