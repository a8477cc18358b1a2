/**
 * copyTree against `cp -a --reflink=auto` on a tree with every inode kind and every piece of
 * metadata, cancellation, an event loop that keeps running during a 200 MB copy, and usage.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { MNT_DETACH, MS, copyTree, lgetxattr, llistxattr, lsetxattr, makedev, mknodat, mount, umount, usage, utimensat } from '../src/index.js';

const execFileP = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const NOW = BigInt(Date.now()) * 1_000_000n;
/** security.capability v2: effective, cap_net_bind_service permitted. */
const CAPABILITY = Buffer.from([0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const ODD = Buffer.from([0x66, 0xff, 0xfe]);

const path = (dir: string, rel: Buffer | string): Buffer => Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(rel)]);

/**
 * Every entry under `dir` by relative path (hex of its bytes): lstat fields, xattrs, content or
 * link target, hard-link group, allocated size of sparse files. Metadata is read before contents.
 */
async function snapshotTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, Record<string, unknown>>();
  const groups = new Map<bigint, string>();
  const visit = async (rel: Buffer): Promise<void> => {
    const p = rel.length ? path(dir, rel) : Buffer.from(dir);
    const st = await lstat(p, { bigint: true });
    const key = rel.toString('hex');
    if (!groups.has(st.ino)) groups.set(st.ino, key);
    const xattrs: string[] = [];
    for (const name of await llistxattr(p)) xattrs.push(`${name.toString('hex')}=${(await lgetxattr(p, name)).toString('hex')}`);
    const { mode, uid, gid, rdev, nlink, mtimeNs, atimeNs } = st;
    const sparse = st.isFile() && st.blocks * 512n < st.size;
    out.set(key, { mode, uid, gid, rdev, nlink, mtimeNs, atimeNs, xattrs: xattrs.sort(), group: groups.get(st.ino), sparse, size: st.isDirectory() ? 0n : st.size });
    if (st.isDirectory()) {
      const names = (await readdir(p, { encoding: 'buffer' })).sort(Buffer.compare);
      for (const n of names) await visit(rel.length ? Buffer.concat([rel, Buffer.from('/'), n]) : n);
    }
  };
  await visit(Buffer.alloc(0));
  for (const [key, e] of out) {
    const p = key ? path(dir, Buffer.from(key, 'hex')) : dir;
    const type = (e.mode as bigint) & 0o170000n;
    if (type === 0o100000n) e.data = createHash('sha256').update(await readFile(p)).digest('hex');
    else if (type === 0o120000n) e.data = (await readlink(p, { encoding: 'buffer' })).toString('hex');
  }
  return new Map([...out].map(([k, v]) => [k, JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x))]));
}

/** A tree with every inode kind and every piece of metadata `cp -a` keeps. */
async function buildRichTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'a/deep/er'), { recursive: true });
  await mkdir(join(dir, 'b'));
  await mkdir(join(dir, 'opaque'));
  await mkdir(path(dir, ODD));
  await writeFile(path(dir, Buffer.concat([ODD, Buffer.from('/'), ODD])), 'name bytes');
  await writeFile(join(dir, 'a/suid'), 'setuid binary');
  await chown(join(dir, 'a/suid'), 1234, 5678);
  await chmod(join(dir, 'a/suid'), 0o6751);
  await writeFile(join(dir, 'a/deep/er/shared'), 'linked three times');
  await link(join(dir, 'a/deep/er/shared'), join(dir, 'b/shared-b'));
  await link(join(dir, 'a/deep/er/shared'), join(dir, 'top-shared'));
  await writeFile(join(dir, 'cap'), 'with capability');
  await writeFile(join(dir, 'empty'), '');
  const fh = await open(join(dir, 'sparse'), 'w');
  await fh.truncate(64 << 20);
  await fh.write(Buffer.alloc(8192, 7), 0, 8192, 32 << 20);
  await fh.close();
  await symlink('a/suid', join(dir, 'sym'));
  await chown(join(dir, 'b'), 99, 98);
  await symlink(Buffer.from([0x2f, 0xff, 0x00].slice(0, 2)), join(dir, 'b/odd-target'));
  await mknodat(join(dir, 'fifo'), 0o010640, 0);
  await mknodat(join(dir, 'null-dev'), 0o020600, makedev(1, 3));
  await mknodat(join(dir, 'sock'), 0o140755, 0);
  await chown(join(dir, 'null-dev'), 7, 8);
  await chmod(join(dir, 'b'), 0o2755);
  await chmod(join(dir, 'opaque'), 0o1777);
  await lsetxattr(join(dir, 'a/suid'), 'user.origin', 'build step 1');
  await lsetxattr(join(dir, 'a/suid'), 'trusted.note', Buffer.from([0, 1, 0, 255]));
  await lsetxattr(join(dir, 'opaque'), 'trusted.overlay.opaque', 'y');
  await lsetxattr(join(dir, 'b/shared-b'), 'user.linked', 'on the inode');
  await lsetxattr(join(dir, 'a/deep'), 'user.dir', 'directory xattr');
  await lsetxattr(join(dir, 'sym'), 'trusted.link', 'on the symlink');
  await lsetxattr(join(dir, 'cap'), 'security.capability', CAPABILITY);
  // nanosecond times, atime after mtime and recent so reads under relatime leave them alone
  const rels: Array<string | Buffer> = ['a/suid', 'sym', 'fifo', 'null-dev', 'sparse', 'a/deep/er', 'opaque', 'a/deep', 'a', 'b', ODD, ''];
  let i = 0n;
  for (const rel of rels) {
    i += 1n;
    await utimensat(rel === '' ? dir : path(dir, rel), NOW - i * 1_000_000_007n, NOW - 7_200_000_000_000n - i * 123_456_789n);
  }
}

describe('copyTree and usage', { skip: !isRoot && 'needs root (owners, devices, trusted.* xattrs)' }, () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'bc-sys-tree-'));
    // noatime: reading a tree (to compare it, or to copy it) must not move the atimes being compared
    await mount(base, base, '', MS.BIND);
    await mount('', base, '', MS.REMOUNT | MS.BIND | MS.NOATIME);
  });
  after(async () => {
    await umount(base, MNT_DETACH);
    await rm(base, { recursive: true, force: true });
  });

  it('copies exactly what cp -a --reflink=auto copies: kinds, owners, modes, xattrs, ns times, links, holes, byte names', async () => {
    const src = join(base, 'rich');
    await mkdir(src);
    await buildRichTree(src);
    const expected = await snapshotTree(src);
    await execFileP('cp', ['-a', '--reflink=auto', `${src}/.`, join(base, 'by-cp')]);
    await copyTree(src, join(base, 'by-addon'));
    const byCp = await snapshotTree(join(base, 'by-cp'));
    const byAddon = await snapshotTree(join(base, 'by-addon'));
    assert.deepEqual([...byAddon.keys()].sort(), [...expected.keys()].sort());
    for (const [k, want] of expected) {
      assert.equal(byAddon.get(k), want, `entry ${Buffer.from(k, 'hex').toString()}`);
      assert.equal(byCp.get(k), byAddon.get(k), `same as cp -a: ${Buffer.from(k, 'hex').toString()}`);
    }
    const sparse = JSON.parse(byAddon.get(Buffer.from('sparse').toString('hex'))!) as { sparse: boolean };
    assert.equal(sparse.sparse, true, 'the sparse file stays sparse');
    assert.ok((await lstat(join(base, 'by-addon/sock'))).isSocket());
  });

  it('copies 2,000 files on several threads, hard links across directories', async () => {
    const src = join(base, 'large');
    for (let d = 0; d < 10; d++) await mkdir(join(src, `d${d}`), { recursive: true });
    for (let i = 0; i < 2000; i++) {
      const p = join(src, `d${i % 10}`, `f${i}`);
      await writeFile(p, Buffer.alloc(4096, i % 251));
      if (i % 50 === 0) await link(p, join(src, `d${(i + 1) % 10}`, `l${i}`));
      if (i % 97 === 0) await lsetxattr(p, 'user.i', String(i));
    }
    await copyTree(src, join(base, 'large-copy'), { threads: 8 });
    assert.deepEqual(await snapshotTree(join(base, 'large-copy')), await snapshotTree(src));
    assert.deepEqual(await usage(join(base, 'large-copy')), await usage(src));
  });

  it('usage counts allocated bytes and inodes, hard links once', async () => {
    const dir = join(base, 'usage');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'sub/a'), Buffer.alloc(10_000, 1));
    await link(join(dir, 'sub/a'), join(dir, 'b'));
    await writeFile(join(dir, 'c'), '');
    await symlink('sub/a', join(dir, 'd'));
    let size = 0;
    for (const p of [dir, join(dir, 'sub'), join(dir, 'sub/a'), join(dir, 'c'), join(dir, 'd')]) size += (await lstat(p)).blocks * 512;
    assert.deepEqual(await usage(dir), { size, inodes: 5 });
    await assert.rejects(usage(join(dir, 'missing')), { code: 'ENOENT', syscall: 'lstat' });
  });

  it('an aborted copy rejects with ECANCELED; a bad source with its errno', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(copyTree(join(base, 'rich'), join(base, 'cancelled'), { signal: ac.signal }), { code: 'ECANCELED' });
    await assert.rejects(copyTree(join(base, 'nothing'), join(base, 'x')), { code: 'ENOENT', syscall: 'lstat' });
    await writeFile(join(base, 'file'), '');
    await assert.rejects(copyTree(join(base, 'file'), join(base, 'y')), { code: 'ENOTDIR' });
  });

  it('keeps the event loop running during a 200 MB tree copy (a timer keeps firing)', async () => {
    const src = join(base, 'big');
    await mkdir(src);
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    for (let i = 0; i < 200; i++) await writeFile(join(src, `f${i}`), chunk);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let finished = false;
    const copy = copyTree(src, join(base, 'big-copy')).finally(() => (finished = true));
    const ticksAtStart = ticks;
    while (!finished && ticks < ticksAtStart + 3) await new Promise((r) => setImmediate(r));
    await copy;
    clearInterval(timer);
    assert.ok(ticks >= ticksAtStart + 3 || !finished, `the timer fired ${ticks - ticksAtStart} times while the copy ran`);
    assert.deepEqual(await usage(join(base, 'big-copy')), await usage(src));
  });
});
