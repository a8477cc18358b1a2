/**
 * Filesystem writes of the layer entries that do not go through the write queue (large and sparse
 * files, devices, whiteouts, copy-ups, xattrs), each on a path whose parents `SafeTree` has checked: files
 * are created with O_EXCL|O_NOFOLLOW and their metadata set through the descriptor, links and
 * device nodes never follow a symlink.
 */
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { chmod, copyFile, lchown, lutimes, open, readlink, symlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import { corrupt } from './tar-format.js';
import type { TarHeader } from './tar-format.js';
import { lsetxattr, makedev, mknodat } from '@buildcache/sys';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/** Metadata the applier restores on an entry. */
export interface EntryMeta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
}

/** Shared settings of entry writes. */
export interface EntryContext {
  readonly preserveOwners: boolean;
  readonly logger: Logger | undefined;
}

/** Permission bits to restore: setuid/setgid only when owners are preserved (root). */
export function modeBits(ctx: EntryContext, mode: number): number {
  return ctx.preserveOwners ? mode & 0o7777 : mode & 0o1777;
}

/** Restores owner, mode and mtime through an open descriptor. */
async function setMeta(ctx: EntryContext, fh: FileHandle, meta: EntryMeta): Promise<void> {
  if (ctx.preserveOwners) await fh.chown(meta.uid, meta.gid);
  await fh.chmod(modeBits(ctx, meta.mode)); // after chown, which clears setuid/setgid
  await fh.utimes(meta.mtime, meta.mtime);
}

/** Opens a new file that must not exist yet (never through a symlink). */
export function createExclusive(path: string): Promise<FileHandle> {
  return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
}

/** The "map" of a file that is not sparse: one segment from offset 0, as long as its body. */
const WHOLE = [0, Number.POSITIVE_INFINITY] as const;

/**
 * Writes a regular file from a streamed body and restores its metadata and xattrs. A sparse entry's
 * body is its stored data (`TarReader.sparseData()`): the file is sized first, then each stored
 * segment written where its map places it, so the holes stay holes.
 */
export async function writeStreamedFile(ctx: EntryContext, path: string, body: AsyncIterable<Buffer>, h: TarHeader): Promise<void> {
  const segments = h.sparse?.segments ?? WHOLE;
  const fh = await createExclusive(path);
  try {
    if (h.sparse) await fh.truncate(h.sparse.realSize);
    let seg = -2;
    let pos = 0; // where the next byte goes
    let left = 0; // bytes left in the current segment
    for await (const chunk of body) {
      for (let done = 0; done < chunk.length; ) {
        while (left === 0) {
          seg += 2;
          if (seg >= segments.length) throw corrupt('more data than its sparse map places', h.name);
          pos = segments[seg]!;
          left = segments[seg + 1]!;
        }
        const { bytesWritten } = await fh.write(chunk, done, Math.min(left, chunk.length - done), pos);
        done += bytesWritten;
        pos += bytesWritten;
        left -= bytesWritten;
      }
    }
    await setMeta(ctx, fh, h);
  } finally {
    await fh.close();
  }
  await setXattrs(ctx, path, h.xattrs, h.name);
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/**
 * Creates a device node or fifo and restores its metadata. One that mknod is not permitted to make
 * (a device, for a normal user or in a user namespace) is skipped with a debug log, as containerd does.
 */
export async function writeSpecial(ctx: EntryContext, path: string, h: TarHeader): Promise<void> {
  const type = h.type === 'char' ? S_IFCHR : h.type === 'block' ? S_IFBLK : S_IFIFO;
  try {
    await mknodat(path, type | 0o600, h.type === 'fifo' ? 0 : makedev(h.devmajor, h.devminor));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    ctx.logger?.debug({ entry: h.name, type: h.type }, 'layer entry skipped: mknod is not permitted here');
    return;
  }
  if (ctx.preserveOwners) await lchown(path, h.uid, h.gid);
  await chmod(path, modeBits(ctx, h.mode)); // path is the node just made; chmod of a device does not follow
  await lutimes(path, h.mtime, h.mtime);
  await setXattrs(ctx, path, h.xattrs, h.name);
}

/** Creates an overlay whiteout (char device 0:0) owned like the entry. */
export async function writeOverlayWhiteout(ctx: EntryContext, path: string, h: TarHeader): Promise<void> {
  await mknodat(path, S_IFCHR, 0);
  if (ctx.preserveOwners) await lchown(path, h.uid, h.gid);
}

/**
 * Copies a non-directory from a lower layer into the upper dir (overlay-upper mode), so that a
 * hard link in the layer can point at it. Regular files and symlinks only.
 */
export async function copyUp(ctx: EntryContext, from: string, to: string, st: Stats): Promise<void> {
  if (st.isSymbolicLink()) {
    await symlink(await readlink(from), to);
    if (ctx.preserveOwners) await lchown(to, st.uid, st.gid);
    await lutimes(to, st.atime, st.mtime);
    return;
  }
  await copyFile(from, to, constants.COPYFILE_EXCL);
  const fh = await open(to, O_WRONLY | O_NOFOLLOW);
  try {
    await setMeta(ctx, fh, { mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtimeMs / 1000 });
  } finally {
    await fh.close();
  }
}

/**
 * Errnos of lsetxattr meaning "this filesystem will not hold this xattr here" (no support, `user.*`
 * on a symlink, no privilege for the namespace, too big): the xattr is skipped, not the layer.
 */
const REFUSED_XATTR = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EPERM', 'E2BIG', 'ERANGE']);

/**
 * Sets a layer entry's xattrs. `trusted.*` ones are never taken from a layer (containerd refuses
 * them too; `trusted.overlay.*` would steer the overlay mount); one the filesystem refuses is
 * skipped. Both are logged at debug.
 */
export async function setXattrs(ctx: EntryContext, path: string, xattrs: ReadonlyMap<string, Buffer>, entry: string): Promise<void> {
  for (const [name, value] of xattrs) {
    if (name.startsWith('trusted.')) {
      ctx.logger?.debug({ entry, xattr: name }, 'layer xattr dropped: trusted.* is not taken from layers');
      continue;
    }
    try {
      await lsetxattr(path, name, value);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined || !REFUSED_XATTR.has(code)) throw err;
      ctx.logger?.debug({ entry, xattr: name, code }, 'layer xattr refused by the filesystem; skipped');
    }
  }
}
