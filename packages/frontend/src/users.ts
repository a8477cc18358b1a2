/**
 * Resolving a Dockerfile `USER` (`name`, `uid`, `name:group`, `uid:gid`) against the step's root
 * filesystem's /etc/passwd and /etc/group, refusing to follow symlinks out of it.
 */
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrNotFound } from '@buildcache/errdefs';

/** A resolved user: uid, primary gid and supplementary gids. */
export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: number[];
}

/** Lines of `<rootfs>/etc/<name>` split at ':' (none when missing or a symlink). */
async function table(rootfs: string, name: string): Promise<string[][]> {
  const path = join(rootfs, 'etc', name);
  const st = await lstat(path).catch(() => undefined);
  const etc = await lstat(join(rootfs, 'etc')).catch(() => undefined);
  if (!st?.isFile() || !etc?.isDirectory()) return [];
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
}

const NUMERIC = /^\d+$/;

/** Resolves `spec` (empty = root) in `rootfs`; unknown names fail with ErrNotFound. */
export async function resolveUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  if (spec === '') return { uid: 0, gid: 0, additionalGids: [] };
  const [user, group] = spec.split(':', 2) as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  let name: string | undefined;
  if (NUMERIC.test(user)) {
    uid = Number(user);
    const row = (await table(rootfs, 'passwd')).find((r) => r[2] === user);
    name = row?.[0];
    gid = row ? Number(row[3]) : undefined;
  } else {
    const row = (await table(rootfs, 'passwd')).find((r) => r[0] === user);
    if (!row) throw new ErrNotFound(`unable to find user ${user}: no matching entries in the image's /etc/passwd`, { details: { id: user } });
    uid = Number(row[2]);
    gid = Number(row[3]);
    name = user;
  }
  const groups = await table(rootfs, 'group');
  if (group !== undefined) {
    if (NUMERIC.test(group)) gid = Number(group);
    else {
      const row = groups.find((r) => r[0] === group);
      if (!row) throw new ErrNotFound(`unable to find group ${group}: no matching entries in the image's /etc/group`, { details: { id: group } });
      gid = Number(row[2]);
    }
  }
  const additionalGids = name === undefined || group !== undefined ? [] : groups.filter((r) => (r[3] ?? '').split(',').includes(name)).map((r) => Number(r[2]));
  return { uid, gid: gid ?? 0, additionalGids };
}
