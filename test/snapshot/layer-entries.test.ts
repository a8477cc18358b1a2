/**
 * Layer entries every backend applies the same way: a GNU tar of a tree holding mknod-made device
 * nodes and a fifo (what a debootstrap'd rootfs has in /dev), a whiteout followed by an entry of
 * the same name (OCI allows it: the whiteout hides the lower entry, the new one replaces it), xattrs
 * (`trusted.*` not applied, `user.*` on a symlink skipped, `security.capability` kept), and a zstd
 * layer that begins with a skippable frame. A GNU tar of a real system tree is applied on every
 * backend and must give the same tree: this machine's tz database (symlinks, hard links), or the
 * root filesystem `BC_ROOTFS_DIR` names (e.g. `debootstrap --variant=minbase bookworm DIR`, which
 * needs the network, so it is not made here). A GNU tar `--sparse` layer (PAX 1.0) applies as the
 * sparse tree it was made of (holes, and old GNU sparse entries: see KNOWN_DIFFERENCES).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_ZSTD } from '@buildcache/snapshot';
import { KNOWN_DIFFERENCES, applyCommit, backendKinds, expectedClass, expectedFor, layerDesc, listSnapshot, openFixture, rejectsWith, sha256 } from './helpers.js';
import type { Fixture } from './helpers.js';
import { tarArchive } from './tarwriter.js';
import { assertSameTree, buildTree, listTree, packLayer, sha256hex } from './trees.js';
import type { Listing, PackedLayer, Spec } from './trees.js';

const execFileP = promisify(execFile);

/** A rootfs's /dev as debootstrap leaves it (a subset), and a file next to it. */
const DEV_TREE: readonly Spec[] = [
  { path: 'dev', type: 'dir' },
  { path: 'dev/null', type: 'char', major: 1, minor: 3, mode: 0o666 },
  { path: 'dev/zero', type: 'char', major: 1, minor: 5, mode: 0o666 },
  { path: 'dev/console', type: 'char', major: 5, minor: 1, mode: 0o600 },
  { path: 'dev/tty', type: 'char', major: 5, minor: 0, mode: 0o666 },
  { path: 'dev/loop0', type: 'block', major: 7, minor: 0, mode: 0o660 },
  { path: 'dev/initctl', type: 'fifo', mode: 0o600 },
  { path: 'etc/hostname', type: 'file', content: 'box\n' },
];

/** The lower layer of the whiteout case. */
const BASE = tarArchive([
  { name: 'a/', type: '5' },
  { name: 'a/old', type: '0', data: 'old' },
  { name: 'b/', type: '5' },
  { name: 'b/c/', type: '5' },
  { name: 'b/c/d', type: '0', data: 'd' },
]);

/** Whiteouts each followed by an entry of the same name: a file replacing a file, a dir replacing a dir. */
const REPLACE = tarArchive([
  { name: 'a/', type: '5' },
  { name: 'a/.wh.old', type: '0' },
  { name: 'a/old', type: '0', data: 'replaced' },
  { name: 'b/', type: '5' },
  { name: 'b/.wh.c', type: '0' },
  { name: 'b/c/', type: '5' },
  { name: 'b/c/e', type: '0', data: 'e' },
]);

/** A valid v2 file capability (cap_net_bind_service, effective). */
const CAP = Buffer.alloc(20);
CAP.writeUInt32LE(0x02000001, 0);
CAP.writeUInt32LE(1 << 10, 4);

const XATTRS = tarArchive([
  {
    name: 'f',
    type: '0',
    data: 'x',
    pax: { 'SCHILY.xattr.trusted.foo': 'bar', 'SCHILY.xattr.security.capability': CAP, 'SCHILY.xattr.user.ok': '1' },
  },
  { name: 'ln', type: '2', linkname: 'f', pax: { 'SCHILY.xattr.user.x': 'v' } },
]);

/** `path → {name → hex value}` of the xattrs of `paths` (not following symlinks), read by Python. */
async function xattrsOf(paths: string[]): Promise<Record<string, Record<string, string>>> {
  const script = [
    'import os, sys, json',
    'print(json.dumps({p: {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in os.listxattr(p, follow_symlinks=False)} for p in sys.argv[1:]}))',
  ].join('\n');
  const { stdout } = await execFileP('python3', ['-c', script, ...paths]);
  return JSON.parse(stdout) as Record<string, Record<string, string>>;
}

/** Writes a few runs into the sparse tree's files (30 runs in `runs.img`: old GNU extension blocks). */
const SPARSE_WRITES = `
import os, sys
with open(os.path.join(sys.argv[1], 'holes.img'), 'r+b') as f:
    for at, text in ((0, b'head'), (10 << 20, b'middle'), (40 << 20, b'x' * 10000)):
        f.seek(at); f.write(text)
with open(os.path.join(sys.argv[1], 'runs.img'), 'r+b') as f:
    for i in range(30):
        f.seek(i * (128 << 10)); f.write(b'run %d' % i)
`;

/** A real system tree: `BC_ROOTFS_DIR` (e.g. debootstrap output), else this machine's tz database or Node's headers. */
const ROOTFS = process.env['BC_ROOTFS_DIR'] ?? (existsSync('/usr/share/zoneinfo') ? '/usr/share/zoneinfo' : '/usr/include/node');

let work = '';
let dev: PackedLayer;
let devListing: Listing;
let skippableZstd: Buffer;
/** GNU tar `--sparse` layers of the sparse tree, by format. */
const sparse: Record<string, Buffer> = {};
let sparseListing: Listing;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'bc-conf-entries-'));
  await buildTree(join(work, 'dev-tree'), DEV_TREE);
  dev = await packLayer(join(work, 'dev-tree'), join(work, 'dev'));
  devListing = await listTree(join(work, 'dev-tree'));
  await writeFile(join(work, 'base.tar'), BASE);
  await execFileP('zstd', ['-q', '-f', '-o', join(work, 'base.tar.zst'), join(work, 'base.tar')]);
  const skippable = Buffer.alloc(8 + 16, 0x2e);
  skippable.writeUInt32LE(0x184d2a5e, 0);
  skippable.writeUInt32LE(16, 4);
  skippableZstd = Buffer.concat([skippable, await readFile(join(work, 'base.tar.zst'))]);
  const tree = join(work, 'sparse-tree');
  await mkdir(tree);
  await execFileP('truncate', ['-s', '64M', join(tree, 'holes.img')]);
  await execFileP('truncate', ['-s', '4M', join(tree, 'runs.img')]);
  await execFileP('python3', ['-c', SPARSE_WRITES, tree]);
  for (const format of ['gnu', 'posix']) {
    await execFileP('tar', ['-C', tree, `--format=${format}`, '--sparse', '-cf', join(work, `sparse-${format}.tar`), '.']);
    sparse[format] = await readFile(join(work, `sparse-${format}.tar`));
  }
  sparseListing = await listTree(tree);
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

for (const kind of backendKinds()) {
  describe(`layer entries [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    it('a GNU tar of a /dev tree (mknod-made char and block devices, a fifo) applies as that tree', async () => {
      const name = f.name('dev');
      const applied = await applyCommit(f, name, undefined, await layerDesc(f, dev.tar, MEDIA_TYPE_LAYER));
      assert.equal(applied.digest, dev.diffID);
      assertSameTree(await listSnapshot(f, name), devListing, 'the /dev tree');
    });

    it(`a GNU tar of a real system tree (${ROOTFS}) applies as that tree`, async () => {
      const tar = join(work, 'rootfs.tar');
      await execFileP('tar', ['-cf', tar, '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', ROOTFS, '.']);
      const bytes = await readFile(tar);
      const name = f.name('rootfs');
      const applied = await applyCommit(f, name, undefined, await layerDesc(f, bytes, MEDIA_TYPE_LAYER));
      assert.equal(applied.digest, sha256(bytes));
      assertSameTree(await listSnapshot(f, name), await listTree(ROOTFS), 'the rootfs');
    });

    it(`a whiteout then an entry of the same name in one layer: a file replaces the lower one, a dir ${expectedFor(KNOWN_DIFFERENCES.dirAfterWhiteout, kind.name)}`, async () => {
      const base = f.name('base');
      const top = f.name('replace');
      await applyCommit(f, base, undefined, await layerDesc(f, BASE, MEDIA_TYPE_LAYER));
      await applyCommit(f, top, base, await layerDesc(f, REPLACE, MEDIA_TYPE_LAYER));
      const { entries } = await listSnapshot(f, top);
      const merges = expectedFor(KNOWN_DIFFERENCES.dirAfterWhiteout, kind.name) === 'merges';
      assert.deepEqual(Object.keys(entries).sort(), ['a', 'a/old', 'b', 'b/c', ...(merges ? ['b/c/d'] : []), 'b/c/e']);
      assert.equal(entries['a/old']?.sha, sha256hex(Buffer.from('replaced')));
    });

    it('xattrs: trusted.* not applied, user.* on a symlink skipped, security.capability and user.* kept', async () => {
      const name = f.name('xattrs');
      await applyCommit(f, name, undefined, await layerDesc(f, XATTRS, MEDIA_TYPE_LAYER));
      const m = await f.mount(await f.backend.snapshotter.view(f.name('xattrs-view'), name, f.leased));
      const got = await xattrsOf([join(m.target, 'f'), join(m.target, 'ln')]);
      assert.deepEqual(got[join(m.target, 'f')], { 'security.capability': CAP.toString('hex'), 'user.ok': '31' });
      assert.deepEqual(got[join(m.target, 'ln')], {});
    });

    for (const format of ['posix', 'gnu'] as const) {
      const row = format === 'gnu' ? KNOWN_DIFFERENCES.sparseOldGnu : { default: 'applied' };
      it(`a GNU tar --sparse layer (${format === 'gnu' ? 'old GNU' : 'PAX 1.0'}): ${expectedFor(row, kind.name) === 'applied' ? `applies as the sparse tree, holes ${expectedFor(KNOWN_DIFFERENCES.sparseHoles, kind.name)}` : 'refused'}`, async () => {
        const tar = sparse[format]!;
        const name = f.name(`sparse-${format}`);
        const desc = await layerDesc(f, tar, MEDIA_TYPE_LAYER);
        if (expectedFor(row, kind.name) !== 'applied') {
          await rejectsWith(applyCommit(f, name, undefined, desc), expectedClass(row, kind.name));
          return;
        }
        const applied = await applyCommit(f, name, undefined, desc);
        assert.equal(applied.digest, sha256(tar));
        assertSameTree(await listSnapshot(f, name), sparseListing, `the sparse tree (${format})`);
        const m = await f.mount(await f.backend.snapshotter.view(f.name(`sparse-${format}-view`), name, f.leased));
        const st = await stat(join(m.target, 'holes.img'));
        const kept = st.blocks * 512 < st.size / 4;
        assert.equal(kept ? 'kept' : 'filled', expectedFor(KNOWN_DIFFERENCES.sparseHoles, kind.name), `${st.blocks * 512} bytes allocated of ${st.size}`);
      });
    }

    it('a zstd layer that begins with a skippable frame applies', async () => {
      const name = f.name('zstd-skippable');
      const applied = await applyCommit(f, name, undefined, await layerDesc(f, skippableZstd, MEDIA_TYPE_LAYER_ZSTD));
      assert.equal(applied.digest, sha256(BASE));
      assert.deepEqual(Object.keys((await listSnapshot(f, name)).entries).sort(), ['a', 'a/old', 'b', 'b/c', 'b/c/d']);
    });
  });
}
