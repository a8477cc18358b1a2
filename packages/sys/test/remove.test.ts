/**
 * removeTree against what `rm -rf` leaves: every inode kind, names that are not UTF-8, symlinks
 * (inside and as the path itself) whose targets stay, hard links whose other name stays, a deep
 * tree, a wide directory, a missing path, and a mount point under the tree (EBUSY, mount kept).
 */
import assert from 'node:assert/strict';
import { access, link, lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { MNT_DETACH, makedev, mknodat, mount, removeTree, umount } from '../src/index.js';

const isRoot = process.getuid?.() === 0;
const exists = (p: string | Buffer): Promise<boolean> => access(p).then(() => true, () => false);

describe('removeTree', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'sys-remove-'));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('removes a tree of every kind, following no symlink and leaving link targets and other hard-link names', async () => {
    const outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'keep'), 'keep');
    await writeFile(join(base, 'other-name'), 'linked');
    const top = join(base, 'tree');
    await mkdir(join(top, 'a/b/c'), { recursive: true });
    await writeFile(join(top, 'a/b/c/file'), 'x');
    await writeFile(join(top, 'a/empty'), '');
    await symlink(outside, join(top, 'a/to-outside-dir'));
    await symlink(join(outside, 'keep'), join(top, 'a/b/to-outside-file'));
    await symlink('dangling', join(top, 'dangling'));
    await link(join(base, 'other-name'), join(top, 'hardlink'));
    execFileSync('mkfifo', [join(top, 'a/fifo')]);
    if (isRoot) await mknodat(join(top, 'a/null'), 0o20644, makedev(1, 3));
    await writeFile(Buffer.from(`${top}/\xff\xfe-not-utf8`, 'latin1'), 'odd');
    await removeTree(top);
    assert.equal(await exists(top), false);
    assert.deepEqual(await readdir(outside), ['keep']);
    assert.equal(await readFile(join(outside, 'keep'), 'utf8'), 'keep');
    assert.equal(await readFile(join(base, 'other-name'), 'utf8'), 'linked');
    assert.equal((await lstat(join(base, 'other-name'))).nlink, 1);
  });

  it('removes a symlink given as the path, not its target; a file; and resolves for a missing path', async () => {
    const target = join(base, 'target');
    await mkdir(target);
    await writeFile(join(target, 'f'), 'f');
    await symlink(target, join(base, 'link'));
    await removeTree(join(base, 'link'));
    assert.equal(await exists(join(base, 'link')), false);
    assert.deepEqual(await readdir(target), ['f']);
    await removeTree(join(target, 'f'));
    assert.deepEqual(await readdir(target), []);
    await removeTree(join(base, 'never-made'));
    await removeTree(join(base, 'never-made/below'));
  });

  it('removes a deep tree and a wide directory', async () => {
    let deep = join(base, 'deep');
    const top = deep;
    for (let i = 0; i < 200; i++) deep = join(deep, 'd');
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'bottom'), 'b');
    const wide = join(base, 'wide');
    await mkdir(wide);
    await Promise.all(Array.from({ length: 3000 }, (_, i) => writeFile(join(wide, `f${i}`), '')));
    await Promise.all([removeTree(top), removeTree(wide)]);
    assert.equal(await exists(top), false);
    assert.equal(await exists(wide), false);
  });

  it('stops with EBUSY at a mount point under the tree and leaves the mount', { skip: !isRoot && 'needs root' }, async () => {
    const top = join(base, 'mounted');
    await mkdir(join(top, 'mnt'), { recursive: true });
    await writeFile(join(top, 'before'), '');
    await mount('tmpfs', join(top, 'mnt'), 'tmpfs', 0);
    try {
      await writeFile(join(top, 'mnt/inside'), 'i');
      await assert.rejects(removeTree(top), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'EBUSY');
        assert.equal(err.path, top);
        return true;
      });
      assert.equal(await readFile(join(top, 'mnt/inside'), 'utf8'), 'i', 'the mounted filesystem is not emptied');
    } finally {
      await umount(join(top, 'mnt'), MNT_DETACH);
    }
    await removeTree(top);
    assert.equal(await exists(top), false);
  });

  it('rejects a path that is not a string or Buffer with a TypeError', async () => {
    assert.throws(() => removeTree(42 as unknown as string), TypeError);
  });
});
