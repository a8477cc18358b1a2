/**
 * The native snapshotter's copy of a parent tree: one `copyTree` call into `@buildcache/sys`,
 * which copies exactly as `cp -a --reflink=auto` does (owners, modes incl. setuid, every xattr,
 * nanosecond times, hard links, devices, sparse files, names as bytes) on threads of its own.
 */
import { ErrFailedPrecondition } from '@buildcache/errdefs';
import { copyTree } from '@buildcache/sys';

/**
 * Copies the contents and metadata of directory `src` onto empty directory `dst` (which gets
 * src's own owner, mode, xattrs and times too). A failure names the path and the errno; the
 * caller removes the partial copy.
 */
export async function copyTreeExact(src: string, dst: string): Promise<void> {
  try {
    await copyTree(src, dst);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ErrFailedPrecondition(`copying ${src} to ${dst} failed: ${e.message}`, { cause: err, details: { path: e.path ?? src } });
  }
}
