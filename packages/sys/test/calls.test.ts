/**
 * Each binding of the addon against the real kernel: errno errors shaped like Node's, byte-exact
 * xattr names and values, nanosecond times, device nodes, renameat2 flags, mounts, sparse copies.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  MNT_DETACH, MS, RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, copyFile, lchown, lgetxattr, llistxattr,
  loadedSourceDigest, lremovexattr, lsetxattr, makedev, mknodat, mount, renameat2, syncfs, umount, utimensat,
} from '../src/index.js';
import { PACKAGE_DIR } from '../src/native.js';

const isRoot = process.getuid?.() === 0;
const NS = (s: number, ns: number): bigint => BigInt(s) * 1_000_000_000n + BigInt(ns);

describe('sys bindings', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'bc-sys-'));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('the loaded binary and the committed prebuild were compiled from these sources', () => {
    const digest = execFileSync(process.execPath, [join(PACKAGE_DIR, 'scripts/source-digest.cjs')], { encoding: 'utf8' });
    assert.equal(loadedSourceDigest(), digest);
    // every committed prebuild carries the digest of the sources it was built from
    const root = join(PACKAGE_DIR, 'prebuilds');
    for (const platform of existsSync(root) ? readdirSync(root) : []) {
      for (const f of readdirSync(join(root, platform)).filter((n) => n.endsWith('.node'))) {
        const stale = `prebuilds/${platform}/${f} is stale: run npm run make-prebuild (x64) or make-prebuild-arm64 -w @buildcache/sys`;
        assert.ok(readFileSync(join(root, platform, f)).includes(digest), stale);
        if (platform !== `${process.platform}-${process.arch}`) continue;
        const mod = { exports: {} as { sourceDigest?: string } };
        process.dlopen(mod, join(root, platform, f));
        assert.equal(mod.exports.sourceDigest, digest, stale);
      }
    }
  });

  it('rejects with Node-style errno errors (code, negative errno, syscall, path)', async () => {
    const missing = join(base, 'missing');
    await assert.rejects(lgetxattr(missing, 'user.x'), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.errno, -2);
      assert.equal(err.syscall, 'lgetxattr');
      assert.equal(err.path, missing);
      assert.equal(err.message, `ENOENT: no such file or directory, lgetxattr '${missing}'`);
      return true;
    });
    const f = join(base, 'plain');
    await writeFile(f, 'x');
    await assert.rejects(lgetxattr(f, 'user.none'), { code: 'ENODATA', errno: -61, syscall: 'lgetxattr' });
    await assert.rejects(umount(f), { code: 'EINVAL', syscall: 'umount2', path: f });
    // @ts-expect-error a number is not a path
    assert.throws(() => lchown(42, 0, 0), { code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('xattrs: names and values byte-exact (NULs in values, non-UTF-8 names), create/remove', async () => {
    const f = join(base, 'xattrs');
    await writeFile(f, '');
    const value = Buffer.from([0, 1, 0, 255, 0]);
    const oddName = Buffer.concat([Buffer.from('user.'), Buffer.from([0xe9, 0xff])]);
    await lsetxattr(f, 'user.nul', value);
    await lsetxattr(f, oddName, Buffer.from('latin1 name'));
    await lsetxattr(f, 'user.empty', Buffer.alloc(0));
    assert.deepEqual(await lgetxattr(f, 'user.nul'), value);
    assert.deepEqual(await lgetxattr(f, oddName), Buffer.from('latin1 name'));
    assert.deepEqual(await lgetxattr(f, 'user.empty'), Buffer.alloc(0));
    const names = (await llistxattr(f)).map((b) => b.toString('hex')).sort();
    assert.deepEqual(names, [oddName, Buffer.from('user.empty'), Buffer.from('user.nul')].map((b) => b.toString('hex')).sort());
    await assert.rejects(lsetxattr(f, 'user.nul', 'again', XATTR_CREATE), { code: 'EEXIST' });
    await lremovexattr(f, 'user.nul');
    await assert.rejects(lgetxattr(f, 'user.nul'), { code: 'ENODATA' });
    // a symlink's own xattrs (trusted.* works on symlinks, user.* does not)
    const link = join(base, 'xattr-link');
    await symlink(f, link);
    if (isRoot) {
      await lsetxattr(link, 'trusted.on-link', 'v');
      assert.deepEqual(await lgetxattr(link, 'trusted.on-link'), Buffer.from('v'));
      await assert.rejects(lgetxattr(f, 'trusted.on-link'), { code: 'ENODATA' });
    }
  });

  it('utimensat keeps whole nanoseconds, on symlinks too, and paths that are not UTF-8 work', async () => {
    const f = Buffer.concat([Buffer.from(join(base, 'ns-')), Buffer.from([0xff, 0xfe])]);
    await writeFile(f, '');
    const atime = NS(1_234_567_890, 123_456_789);
    const mtime = NS(1_000_000_000, 999_999_999);
    await utimensat(f, atime, mtime);
    const st = await lstat(f, { bigint: true });
    assert.equal(st.atimeNs, atime);
    assert.equal(st.mtimeNs, mtime);
    const link = join(base, 'ns-link');
    await symlink('/nowhere', link);
    await utimensat(link, NS(5, 1), NS(-1, 5));
    const ls = await lstat(link, { bigint: true });
    assert.equal(ls.mtimeNs, NS(-1, 5), 'times before the epoch');
    assert.equal(ls.atimeNs, NS(5, 1));
  });

  it('renameat2: NOREPLACE refuses to overwrite, EXCHANGE swaps', async () => {
    const a = join(base, 'ra');
    const b = join(base, 'rb');
    await writeFile(a, 'A');
    await writeFile(b, 'B');
    await assert.rejects(renameat2(a, b, RENAME_NOREPLACE), { code: 'EEXIST', syscall: 'renameat2' });
    await renameat2(a, b, RENAME_EXCHANGE);
    assert.equal(await readFile(a, 'utf8'), 'B');
    assert.equal(await readFile(b, 'utf8'), 'A');
    await renameat2(a, join(base, 'rc'), RENAME_NOREPLACE);
    assert.equal(await readFile(join(base, 'rc'), 'utf8'), 'B');
    await syncfs(base);
  });

  it('copyFile of a sparse 1 GiB file keeps it sparse and its data in place', async () => {
    const src = join(base, 'sparse');
    const fh = await open(src, 'w');
    await fh.truncate(1 << 30);
    await fh.write(Buffer.alloc(4096, 1), 0, 4096, 0);
    await fh.write(Buffer.alloc(4096, 2), 0, 4096, 512 << 20);
    await fh.close();
    const dst = join(base, 'sparse-copy');
    await copyFile(src, dst);
    const st = await lstat(dst);
    assert.equal(st.size, 1 << 30);
    assert.ok(st.blocks * 512 <= 1 << 20, `copy allocates ${st.blocks * 512} bytes, not 1 GiB`);
    const rh = await open(dst, 'r');
    const buf = Buffer.alloc(4096);
    await rh.read(buf, 0, 4096, 512 << 20);
    assert.deepEqual(buf, Buffer.alloc(4096, 2));
    await rh.read(buf, 0, 4096, 256 << 20);
    assert.deepEqual(buf, Buffer.alloc(4096, 0));
    await rh.close();
    await assert.rejects(copyFile(src, dst), { code: 'EEXIST', syscall: 'open', path: dst });
  });

  it('mknodat, lchown, mount with flags and cwd, umount with MNT_DETACH', { skip: !isRoot && 'needs root' }, async () => {
    const dev = join(base, 'null');
    await mknodat(dev, 0o020600, makedev(1, 3));
    await lchown(dev, 7, 8);
    const st = await lstat(dev);
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, makedev(1, 3));
    assert.deepEqual([st.uid, st.gid], [7, 8]);
    await assert.rejects(mknodat(dev, 0o020600, 0), { code: 'EEXIST', syscall: 'mknodat' });

    const target = join(base, 'mnt');
    await mkdir(target);
    await mount('tmpfs', target, 'tmpfs', MS.NOSUID, 'size=1m,mode=0750');
    try {
      assert.equal(((await lstat(target)).mode & 0o777), 0o750, 'data reached the filesystem');
      await writeFile(join(target, 'f'), 'in tmpfs');
      // a bind whose source is relative to cwd (how long overlay paths are shortened)
      const bind = join(base, 'bind');
      await mkdir(bind);
      await mount('mnt', bind, '', MS.BIND, '', base);
      assert.equal(await readFile(join(bind, 'f'), 'utf8'), 'in tmpfs');
      assert.equal(process.cwd() !== base, true, 'the process cwd is untouched');
      await umount(bind, MNT_DETACH);
      assert.deepEqual(await readdir(bind), []);
    } finally {
      await umount(target, MNT_DETACH);
    }
    await assert.rejects(mount('none', join(base, 'nowhere'), 'tmpfs', 0), { code: 'ENOENT', syscall: 'mount' });
  });
});
