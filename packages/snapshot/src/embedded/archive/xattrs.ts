/**
 * Reading xattrs for the differ (and the tests that inspect trees): every xattr of a path, not
 * following symlinks, through `@buildcache/sys`, with the number of paths read at once bounded.
 */
import pLimit from 'p-limit';
import { lgetxattr, llistxattr } from '@buildcache/sys';

const limit = pLimit(16);

/** The xattrs of each path (not following symlinks); a path that cannot be listed gets none. */
export async function listXattrs(paths: readonly string[]): Promise<Array<Map<string, Buffer>>> {
  return Promise.all(paths.map((p) => limit(() => xattrsOf(p))));
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
