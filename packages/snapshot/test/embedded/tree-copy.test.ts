/**
 * The native snapshotter's exact tree copy through prepare: every inode kind, owners, modes,
 * nanosecond times, xattrs (user.*, trusted.* incl. overlay, security.capability), hard links
 * across directories, names that are not UTF-8, 1,000 files. (copyTree itself is tested against
 * `cp -a` in @buildcache/sys.)
 */
import assert from 'node:assert/strict';
import { chmod, chown, lchown, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lsetxattr, makedev, mknodat, utimensat } from '@buildcache/sys';
import { listXattrs } from '../../src/embedded/archive/xattrs.js';
import { removeTree } from '../../src/embedded/fsutil.js';
import { copyTreeExact } from '../../src/embedded/tree-copy.js';
import { embeddedFactory } from './helpers.js';
import type { Harness } from './helpers.js';

const isRoot = process.getuid?.() === 0;
/** 2001-09-09T01:46:40.123456789Z and friends: whole nanoseconds a double cannot hold. */
const NS = (s: number, ns: number): bigint => BigInt(s) * 1_000_000_000n + BigInt(ns);
/** security.capability v2: effective, cap_net_bind_service permitted. */
const CAPABILITY = Buffer.from([0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** One entry as compared: lstat fields, content or link target, xattrs. */
interface Seen {
  mode: bigint;
  uid: bigint;
  gid: bigint;
  size: bigint;
  rdev: bigint;
  nlink: bigint;
  mtimeNs: bigint;
  atimeNs: bigint;
  data: string;
  xattrs: string;
  /** Index of the first path with the same inode (hard-link groups). */
  group: string;
}

/**
 * Everything under `dir` (itself as '.'), by relative path. Metadata first (a directory is stat'ed
 * before it is read), contents after, so the comparison's own reads move no atime it records.
 */
async function snapshotTree(dir: string): Promise<Map<string, Seen>> {
  const groups = new Map<bigint, string>();
  const out = new Map<string, Seen>();
  const visit = async (rel: string): Promise<void> => {
    const p = join(dir, rel);
    const st = await lstat(p, { bigint: true });
    const x = [...(await xattrsOf(p))].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',');
    if (!groups.has(st.ino)) groups.set(st.ino, rel);
    const { mode, uid, gid, size, rdev, nlink, mtimeNs, atimeNs } = st;
    out.set(rel, { mode, uid, gid, size: st.isDirectory() ? 0n : size, rdev, nlink, mtimeNs, atimeNs, data: '', xattrs: x, group: groups.get(st.ino)! });
    if (st.isDirectory()) for (const name of (await readdir(p)).sort()) await visit(rel === '.' ? name : `${rel}/${name}`);
  };
  await visit('.');
  for (const [rel, seen] of out) {
    const p = join(dir, rel);
    if ((seen.mode & 0o170000n) === 0o100000n) seen.data = (await readFile(p)).toString('base64');
    else if ((seen.mode & 0o170000n) === 0o120000n) seen.data = await readlink(p);
  }
  return out;
}

/**
 * Reads every file, directory and symlink once, so later reads no longer move atimes (relatime).
 * It first lets the kernel's coarse clock pass the entries' ctimes: a read in the same tick would
 * leave atime == ctime, and the next read (the copy's) would move it again.
 */
async function settleAtimes(dir: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 20));
  await readAll(dir);
}

async function readAll(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) await readAll(join(dir, e.name));
    else if (e.isFile()) await readFile(join(dir, e.name));
    else if (e.isSymbolicLink()) await readlink(join(dir, e.name));
  }
}

/** Asserts `copy` equals `expected` entry by entry, field by field. */
async function assertSameTree(expected: Map<string, Seen>, copy: string): Promise<void> {
  const got = await snapshotTree(copy);
  assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
  for (const [rel, want] of expected) assert.deepEqual(got.get(rel), want, `entry ${rel}`);
}

/** A tree with every kind of inode and metadata the copy must keep. */
async function buildRichTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'a/deep/er'), { recursive: true });
  await mkdir(join(dir, 'b'));
  await mkdir(join(dir, 'opaque'));
  await writeFile(join(dir, 'a/suid'), 'setuid binary');
  await chown(join(dir, 'a/suid'), 1234, 5678);
  await chmod(join(dir, 'a/suid'), 0o6751);
  await writeFile(join(dir, 'a/deep/er/shared'), 'linked three times');
  await link(join(dir, 'a/deep/er/shared'), join(dir, 'b/shared-b'));
  await link(join(dir, 'a/deep/er/shared'), join(dir, 'top-shared'));
  await writeFile(join(dir, 'cap'), 'with capability');
  await writeFile(join(dir, 'empty'), '');
  await symlink('a/suid', join(dir, 'sym'));
  await lchown(join(dir, 'sym'), 42, 43);
  await symlink('/nonexistent/target', join(dir, 'b/dangling'));
  await mknodat(join(dir, 'fifo'), 0o010640, 0);
  await mknodat(join(dir, 'null-dev'), 0o020600, makedev(1, 3));
  await chown(join(dir, 'null-dev'), 7, 8);
  await chmod(join(dir, 'b'), 0o2755);
  await chmod(join(dir, 'opaque'), 0o1777);
  await lsetxattr(join(dir, 'a/suid'), 'user.origin', Buffer.from('build step 1'));
  await lsetxattr(join(dir, 'a/suid'), 'trusted.note', Buffer.from([0, 1, 2, 255]));
  await lsetxattr(join(dir, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  await lsetxattr(join(dir, 'b/shared-b'), 'user.linked', Buffer.from('on the inode'));
  await lsetxattr(join(dir, 'a/deep'), 'user.dir', Buffer.from('directory xattr'));
  await lsetxattr(join(dir, 'cap'), 'security.capability', CAPABILITY);
  // nanosecond times, set last so nothing above moves them
  const times = [
    ['a/suid', NS(1_000_000_000, 123_456_789)],
    ['sym', NS(1_100_000_000, 1)],
    ['fifo', NS(1_200_000_000, 999_999_999)],
    ['null-dev', NS(1_300_000_000, 500)],
    ['a/deep/er', NS(1_400_000_000, 7)],
    ['opaque', NS(1_500_000_000, 77)],
  ] as const;
  for (const [rel, ns] of times) await utimensat(join(dir, rel), ns - 5n, ns);
  assert.equal((await lstat(join(dir, 'a/suid'), { bigint: true })).mtimeNs, NS(1_000_000_000, 123_456_789));
}

async function xattrsOf(path: string): Promise<Map<string, Buffer>> {
  return (await listXattrs([path]))[0]!;
}

/** `n` files of 4 KiB in 10 directories, every 50th hard-linked into the next directory, a few xattrs. */
async function buildLargeTree(dir: string, n: number): Promise<void> {
  for (let d = 0; d < 10; d++) await mkdir(join(dir, `d${d}`));
  for (let i = 0; i < n; i++) {
    const p = join(dir, `d${i % 10}`, `f${i}`);
    await writeFile(p, Buffer.alloc(4096, i % 251));
    if (i % 50 === 0) await link(p, join(dir, `d${(i + 1) % 10}`, `l${i}`));
    if (i % 97 === 0) await lsetxattr(p, 'user.i', Buffer.from(String(i)));
    if (i % 101 === 0) await chown(p, i, i + 1);
  }
}

describe('native tree copy', { skip: !isRoot && 'needs root (owners, devices, trusted.* xattrs)' }, () => {
  let base: string;
  let h: Harness;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'bc-treecopy-'));
    h = await embeddedFactory('native')();
  });
  after(async () => {
    await h.dispose();
    await removeTree(base);
  });

  it('copies every inode kind with owners, modes, ns times, xattrs and hard links', async () => {
    const src = join(base, 'rich-src');
    const dst = join(base, 'rich-dst');
    await mkdir(src);
    await mkdir(dst);
    await buildRichTree(src);
    await settleAtimes(src);
    const expected = await snapshotTree(src);
    await copyTreeExact(src, dst);
    await assertSameTree(expected, dst);
    const got = await snapshotTree(dst);
    assert.equal(got.get('a/suid')!.mtimeNs, NS(1_000_000_000, 123_456_789), 'nanosecond mtime kept exactly');
    assert.equal(got.get('sym')!.mtimeNs, NS(1_100_000_000, 1), 'symlink mtime kept (lutimes)');
    assert.equal(got.get('fifo')!.atimeNs, NS(1_200_000_000, 999_999_999) - 5n, 'nanosecond atime kept exactly');
    assert.equal(got.get('a/suid')!.mode & 0o7777n, 0o6751n);
    assert.equal(got.get('b/shared-b')!.group, got.get('a/deep/er/shared')!.group, 'hard-link group across directories');
    assert.equal(got.get('top-shared')!.nlink, 3n);
    assert.match(got.get('cap')!.xattrs, /^security\.capability=/);
    assert.match(got.get('opaque')!.xattrs, /trusted\.overlay\.opaque=79/);
    assert.ok((await lstat(join(dst, 'fifo'))).isFIFO());
    const dev = await lstat(join(dst, 'null-dev'));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, makedev(1, 3));
  });

  it('prepare on a native parent yields the same exact copy', async () => {
    const s = h.backend.snapshotter;
    const dir = (await s.prepare('rich-a', undefined))[0]!.source;
    await buildRichTree(dir);
    await s.commit('rich', 'rich-a');
    await settleAtimes(dir);
    const expected = await snapshotTree(dir);
    const copy = (await s.prepare('rich-child', 'rich'))[0]!.source;
    await assertSameTree(expected, copy);
  });

  it('copies 1,000 files through prepare', async () => {
    const s = h.backend.snapshotter;
    const dir = (await s.prepare('large-a', undefined))[0]!.source;
    await buildLargeTree(dir, 1000);
    await s.commit('large', 'large-a');
    await settleAtimes(dir);
    const viaPrepare = await snapshotTree(dir);
    await assertSameTree(viaPrepare, (await s.prepare('large-child', 'large'))[0]!.source);
  });

  it('copies names that are not UTF-8 byte for byte; a failed copy names the path and errno', async () => {
    const src = join(base, 'odd-src');
    const dst = join(base, 'odd-dst');
    await mkdir(src);
    await mkdir(dst);
    const odd = Buffer.concat([Buffer.from(`${src}/`), Buffer.from([0x66, 0xff, 0xfe])]);
    await writeFile(odd, 'latin');
    await copyTreeExact(src, dst);
    const names = await readdir(dst, { encoding: 'buffer' });
    assert.deepEqual(names, [Buffer.from([0x66, 0xff, 0xfe])]);
    await assert.rejects(copyTreeExact(join(base, 'missing'), join(base, 'x')), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'ERR_FAILED_PRECONDITION');
      assert.match(err.message, /ENOENT.*lstat.*missing/);
      return true;
    });
  });
});
