/**
 * System calls Node lacks (mknod, lsetxattr, llistxattr/lgetxattr) for the layer applier and
 * differ, through `@buildcache/sys`. Nothing here follows a symlink: the calls are the `l*`
 * variants and mknodat on a path whose parents the caller has checked.
 */
import pLimit from 'p-limit';
import { lgetxattr, llistxattr, lsetxattr, mknodat } from '@buildcache/sys';

export { makedev } from '@buildcache/sys';

/** The calls of one apply or diff. */
export class SysHelper {
  private readonly limit = pLimit(16);

  /** mknod(2) of a char/block device or fifo at `path` (`mode` includes the S_IF* type bits). */
  async mknod(path: string, mode: number, dev: number): Promise<void> {
    await mknodat(path, mode, dev);
  }

  /** lsetxattr(2). */
  async setXattr(path: string, name: string, value: Buffer): Promise<void> {
    await lsetxattr(path, name, value);
  }

  /** The xattrs of each path (not following symlinks); a path that cannot be listed gets none. */
  async listXattrs(paths: readonly string[]): Promise<Array<Map<string, Buffer>>> {
    return Promise.all(paths.map((p) => this.limit(() => xattrsOf(p))));
  }

  /** Nothing to end (kept for callers that close what they opened). */
  async close(): Promise<void> {}
}

async function xattrsOf(path: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  let names: Buffer[];
  try {
    names = await llistxattr(path);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      out.set(name.toString('utf8'), await lgetxattr(path, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENODATA') throw err;
    }
  }
  return out;
}
