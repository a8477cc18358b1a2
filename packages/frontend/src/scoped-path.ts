/**
 * Paths inside a step's root filesystem resolved as the container would see them: symlinks are
 * followed, but an absolute target or `..` never leaves the root (as chroot, or Go's securejoin).
 * Every write into a snapshot goes through here, so an image's symlink cannot redirect it to the host.
 */
import { lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';

const MAX_LINKS = 255;

/**
 * The host path of `path` (absolute, in-container) under `root`, with every symlink on the way
 * resolved inside `root`; the last component is resolved too unless `followLast` is false. Missing
 * components are kept as they are (the caller creates them).
 */
export async function scopedPath(root: string, path: string, followLast = true): Promise<string> {
  let pending = posix.normalize('/' + path).split('/').filter(Boolean);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, name);
    const st = pending.length === 0 && !followLast ? undefined : await lstat(host).catch(() => undefined);
    if (!st?.isSymbolicLink()) {
      done.push(name);
      continue;
    }
    if (++links > MAX_LINKS) throw Object.assign(new Error(`too many levels of symbolic links at /${[...done, name].join('/')}`), { code: 'ELOOP' });
    const target = await readlink(host);
    const rest = target.split('/').filter(Boolean);
    if (target.startsWith('/')) done.length = 0;
    pending = [...rest, ...pending];
  }
  return join(root, ...done);
}
