/** tree → diff → tar → apply into an empty dir → the identical tree; determinism; compression. */
import assert from 'node:assert/strict';
import { chmod, chown, lchown, link, lutimes, mkdir, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { applyLayer, compressor, decompress, detectCompression, writeDiff } from '../../src/embedded/archive/index.js';
import { listXattrs } from '../../src/embedded/archive/xattrs.js';
import { layerMediaType } from '../../src/labels.js';
import type { Compression } from '../../src/labels.js';
import { cleanup, collect, setXattr, snapshotTree, tempDir } from './helpers.js';

after(cleanup);

/** A tree with every kind of thing the applier must keep. */
export async function richTree(root: string): Promise<void> {
  await mkdir(join(root, 'etc', 'conf.d'), { recursive: true });
  await mkdir(join(root, 'tmp'));
  await mkdir(join(root, 'srv', 'www'), { recursive: true });
  await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0\n');
  await writeFile(join(root, 'etc', 'conf.d', 'empty'), '');
  await writeFile(join(root, 'srv', 'www', 'big.bin'), Buffer.alloc(3 << 20, 7));
  await writeFile(join(root, 'suid'), '#!/bin/sh\n');
  await chmod(join(root, 'suid'), 0o4755);
  await writeFile(join(root, 'sgid'), 'g');
  await chmod(join(root, 'sgid'), 0o2750);
  await chmod(join(root, 'tmp'), 0o1777);
  await chmod(join(root, 'srv', 'www'), 0o750);
  await chown(join(root, 'srv', 'www'), 33, 33);
  await writeFile(join(root, 'srv', 'www', 'index.html'), '<html/>');
  await chown(join(root, 'srv', 'www', 'index.html'), 33, 44);
  await link(join(root, 'etc', 'passwd'), join(root, 'etc', 'passwd.hl'));
  await symlink('../etc/passwd', join(root, 'tmp', 'pw'));
  await lchown(join(root, 'tmp', 'pw'), 5, 6);
  await symlink('/absolute/dangling', join(root, 'dangling'));
  await writeFile(join(root, 'xattr-file'), 'x');
  await setXattr(join(root, 'xattr-file'), 'user.color', 'blue');
  await setXattr(join(root, 'etc', 'conf.d'), 'user.dir', 'yes');
  await writeFile(join(root, 'ünïcödé näme'), 'u');
  await mkdir(join(root, 'l'.repeat(90), 'm'.repeat(90)), { recursive: true });
  await writeFile(join(root, 'l'.repeat(90), 'm'.repeat(90), 'n'.repeat(90)), 'deep');
  for (const p of await readdir(root, { recursive: true })) await lutimes(join(root, p), 1_300_000_000.125, 1_300_000_000.125);
  await lutimes(join(root, 'tmp', 'pw'), 1_600_000_000, 1_600_000_000);
  for (const p of ['etc/passwd', 'suid', 'srv/www/big.bin', 'xattr-file']) await utimes(join(root, p), 1_500_000_000.5, 1_500_000_000.25);
  for (const p of ['etc/conf.d', 'etc', 'srv/www', 'tmp']) await utimes(join(root, p), 1_400_000_000, 1_400_000_000);
}

async function diffBytes(upper: string, lower?: string): Promise<{ tar: Buffer; diffID: string }> {
  const parts: Buffer[] = [];
  const r = await writeDiff({ kind: 'trees', upper, ...(lower ? { lower } : {}) }, (c) => {
    parts.push(Buffer.from(c));
  });
  const tar = Buffer.concat(parts);
  assert.equal(r.size, tar.length);
  return { tar, diffID: r.diffID };
}

describe('round trips', () => {
  it('tree → diff → apply gives the identical tree (modes, owners, mtimes, links, xattrs)', async () => {
    const src = await tempDir();
    await richTree(src);
    const { tar, diffID } = await diffBytes(src);
    const dst = await tempDir();
    const res = await applyLayer([tar], dst, { compression: 'uncompressed' });
    assert.equal(res.diffID, diffID);
    assert.equal(res.size, tar.length);
    const want = await snapshotTree(src, { xattrs: true });
    assert.deepEqual(await snapshotTree(dst, { xattrs: true }), want);
    assert.match(want['xattr-file']!, /user\.color/);
    assert.match(want['suid']!, /mode=104755/);
    assert.match(want['etc/passwd.hl']!, /inode-of=etc\/passwd/);
    // and diffing the result again gives the same bytes
    assert.equal((await diffBytes(dst)).diffID, diffID);
  });

  it('is deterministic across runs and across trees built twice', async () => {
    const a = await tempDir();
    const b = await tempDir();
    await richTree(a);
    await richTree(b);
    const one = await diffBytes(a);
    const two = await diffBytes(a);
    const three = await diffBytes(b);
    assert.ok(one.tar.equals(two.tar));
    assert.equal(one.diffID, three.diffID);
  });

  it('a diff against an identical lower is empty', async () => {
    const a = await tempDir();
    const b = await tempDir();
    await richTree(a);
    await richTree(b);
    const { tar } = await diffBytes(b, a);
    assert.equal(tar.length, 1024);
  });

  for (const compression of ['gzip', 'zstd'] as const) {
    it(`${compression}: compress → detect → decompress → apply`, async () => {
      const src = await tempDir();
      await richTree(src);
      const { tar, diffID } = await diffBytes(src);
      const comp = compressor(compression);
      const out = collect(comp as AsyncIterable<Buffer>);
      comp.end(tar);
      const blob = await out;
      assert.equal(detectCompression(blob), compression);
      assert.ok((await collect(decompress([blob], compression))).equals(tar));
      const dst = await tempDir();
      const res = await applyLayer([blob], dst, { compression });
      assert.equal(res.diffID, diffID);
      assert.deepEqual(await snapshotTree(dst), await snapshotTree(src));
    });
  }

  it('zstd: a stream that begins with a skippable frame is zstd, detected and applied', async () => {
    const src = await tempDir();
    await richTree(src);
    const { tar, diffID } = await diffBytes(src);
    const comp = compressor('zstd');
    const out = collect(comp as AsyncIterable<Buffer>);
    comp.end(tar);
    for (const magic of [0x184d2a50, 0x184d2a5f]) {
      const skippable = Buffer.alloc(8 + 5, 0x2e);
      skippable.writeUInt32LE(magic, 0);
      skippable.writeUInt32LE(5, 4);
      const blob = Buffer.concat([skippable, await out]);
      assert.equal(detectCompression(blob), 'zstd');
      for (const compression of ['zstd', 'auto'] as const) {
        const dst = await tempDir();
        assert.equal((await applyLayer([blob], dst, { compression })).diffID, diffID);
        assert.deepEqual(await snapshotTree(dst), await snapshotTree(src));
      }
    }
  });

  it('an unknown compression name is ErrInvalidArgument everywhere it is taken', async () => {
    const bogus = 'zst' as Compression;
    assert.throws(() => compressor(bogus), ErrInvalidArgument);
    assert.throws(() => layerMediaType(bogus), ErrInvalidArgument);
    assert.throws(() => decompress([Buffer.from('x')], bogus), ErrInvalidArgument);
    await assert.rejects(applyLayer([Buffer.alloc(1024)], await tempDir(), { compression: bogus }), ErrInvalidArgument);
  });

  it('xattr helper reports nothing for a file without xattrs', async () => {
    const d = await tempDir();
    await writeFile(join(d, 'f'), '');
    assert.deepEqual([...((await listXattrs([join(d, 'f')]))[0] ?? [])], []);
  });
});
