/**
 * `@buildcache/sys`: the Linux system calls Node lacks, from a small N-API addon. Every call runs
 * on the libuv thread pool (never on the event loop) and rejects with a Node-style errno error
 * (`code`, `errno` (negative, as Node's fs), `syscall`, `path`). Paths and xattr names are strings
 * (UTF-8) or Buffers (the exact bytes, for names that are not UTF-8). Nothing follows a symlink
 * unless said.
 */
import { native } from './native.js';
import type { Bytes, EntryWrite } from './native.js';

export type { Bytes, EntryWrite } from './native.js';
export { BUILD_HINT } from './native.js';
export { fsyncPath, processGone, removeStalePartials, writeFileWhole } from './durable.js';
export { PoolSha256 } from './hash.js';

/** mount(2) flags. */
export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, REC: 16384, RELATIME: 1 << 21, STRICTATIME: 1 << 24,
} as const;
/** umount2(2): detach now, clean up when no longer busy. */
export const MNT_DETACH = 2;
/** renameat2(2) flags. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
/** lsetxattr(2) flags. */
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
/** utimensat(2): act on a symlink itself. */
export const AT_SYMLINK_NOFOLLOW = 0x100;

/**
 * Throws ErrFailedPrecondition (one line, saying how to build the addon) when it does not load on
 * this machine; backends call it when they open.
 */
export function assertSysLoaded(): void {
  native();
}

/** The sha256 of the C sources the loaded binary was compiled from. */
export function loadedSourceDigest(): string {
  return native().sourceDigest;
}

/** mount(2). `cwd` resolves relative paths in `data` (shortened overlay dirs) without touching the process's cwd. */
export function mount(source: Bytes, target: Bytes, fstype: Bytes, flags: number, data = '', cwd = ''): Promise<void> {
  return native().mount(source, target, fstype, flags, data, cwd);
}

/** umount2(2); `flags` e.g. MNT_DETACH. */
export function umount(target: Bytes, flags = 0): Promise<void> {
  return native().umount(target, flags);
}

/** mknodat(2) relative to the cwd: a device node, fifo or socket (`mode` includes the S_IF* type bits). */
export function mknodat(path: Bytes, mode: number, dev: number): Promise<void> {
  return native().mknodat(path, mode, dev);
}

/** Linux `makedev`. */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** lsetxattr(2): sets one xattr, value bytes as they are (NULs included). */
export function lsetxattr(path: Bytes, name: Bytes, value: Bytes, flags = 0): Promise<void> {
  return native().lsetxattr(path, name, value, flags);
}

/** lgetxattr(2): the value's bytes. */
export function lgetxattr(path: Bytes, name: Bytes): Promise<Buffer> {
  return native().lgetxattr(path, name);
}

/** llistxattr(2): the names, as bytes. */
export function llistxattr(path: Bytes): Promise<Buffer[]> {
  return native().llistxattr(path);
}

/** lremovexattr(2). */
export function lremovexattr(path: Bytes, name: Bytes): Promise<void> {
  return native().lremovexattr(path, name);
}

/** lchown(2). */
export function lchown(path: Bytes, uid: number, gid: number): Promise<void> {
  return native().lchown(path, uid, gid);
}

/** utimensat(2) with whole nanoseconds since the epoch; by default on a symlink itself. */
export function utimensat(path: Bytes, atimeNs: bigint, mtimeNs: bigint, flags = AT_SYMLINK_NOFOLLOW): Promise<void> {
  return native().utimensat(path, atimeNs, mtimeNs, flags);
}

/** renameat2(2); `flags` RENAME_NOREPLACE or RENAME_EXCHANGE. */
export function renameat2(from: Bytes, to: Bytes, flags = 0): Promise<void> {
  return native().renameat2(from, to, flags);
}

/** syncfs(2) of the filesystem holding `path`. */
export function syncfs(path: Bytes): Promise<void> {
  return native().syncfs(path);
}

/**
 * Copies regular file `src` to new file `dst` (which must not exist) with src's permission bits:
 * a reflink (FICLONE) where the filesystem can, else copy_file_range; holes stay holes.
 */
export function copyFile(src: Bytes, dst: Bytes): Promise<void> {
  return native().copyFile(src, dst);
}

/** Options of `copyTree`. */
export interface CopyTreeOptions {
  /** Aborting makes the copy stop soon and reject with ECANCELED (what was copied stays). */
  readonly signal?: AbortSignal;
  /** Copying threads inside the addon (1..32, default 4). */
  readonly threads?: number;
}

/**
 * Copies the tree under directory `src` onto `dst` (made when missing, else it should be empty) as
 * `cp -a --reflink=auto src/. dst` does: owners, modes incl. setuid/setgid/sticky, every xattr,
 * nanosecond atime and mtime, hard links as links, symlinks, device nodes, fifos, sockets, sparse
 * files as sparse, names as bytes. `dst` gets src's own metadata too. On failure the partial copy
 * is left for the caller to remove.
 */
export async function copyTree(src: Bytes, dst: Bytes, options: CopyTreeOptions = {}): Promise<void> {
  const signal = options.signal;
  const [done, cancel] = native().copyTree(src, dst, options.threads, signal?.aborted === true);
  if (!signal) return done;
  signal.addEventListener('abort', cancel, { once: true });
  try {
    await done;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** Disk usage of a tree: allocated bytes (st_blocks × 512) and inodes, hard links counted once, the top included. */
export function usage(path: Bytes): Promise<{ size: number; inodes: number }> {
  return native().usage(path);
}

/**
 * Removes `path` and, for a directory, everything under it, as `rm -rf --one-file-system` does:
 * through directory fds on one pool thread, never following a symlink (a symlink, also `path`
 * itself, is removed, not its target). A missing path is fine. A filesystem mounted under it is
 * not entered: EBUSY (what was removed before stays removed). The tree's depth is bounded by the
 * open-file limit (one fd a level).
 */
export function removeTree(path: Bytes): Promise<void> {
  return native().removeTree(path);
}

/** `kind` of a `writeEntries` item. */
export const ENTRY = { FILE: 0, DIR: 1, SYMLINK: 2, META: 3 } as const;

/**
 * Creates many entries under directory `root`, in order, in one job on the thread pool (for a layer
 * applier's small files): `FILE` a new regular file (O_EXCL, never through a symlink) holding `data`;
 * `DIR` a new directory (0700, its metadata comes later); `SYMLINK` a new symlink to `link`; `META`
 * the metadata of an existing directory. FILE, SYMLINK and META then get owner (when `chown`), mode
 * (07777 bits) and atime = mtime (seconds, microsecond precision). `path` is relative to `root`;
 * its parent is resolved beneath `root` following no symlink (openat2 RESOLVE_BENEATH|
 * RESOLVE_NO_SYMLINKS, else openat O_NOFOLLOW per component), so nothing lands outside it; a path
 * with an empty, `.` or `..` component is EINVAL. Stops at the first failure, rejecting with the
 * errno error of the relative path and `index`, the item that failed (earlier items stay done).
 * `options.walk` uses the per-component walk even where openat2 exists (for tests of the fallback).
 */
export function writeEntries(root: Bytes, entries: readonly EntryWrite[], options: { readonly walk?: boolean } = {}): Promise<void> {
  return native().writeEntries(root, entries, options.walk === true);
}
