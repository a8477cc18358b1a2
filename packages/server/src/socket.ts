/**
 * The daemon's unix socket: address syntax, refusing a path a live server holds, removing a stale
 * one, and creating it with mode 0660, owner root (the daemon's user) and the chosen group.
 */
import { connect } from 'node:net';
import { chmod, chown, lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';

/** The daemon's default address. */
export const DEFAULT_ADDRESS = 'unix:///run/buildcache/buildcache.sock';

/** The socket path of an address: `unix:///abs/path`, `unix:/abs/path` or `/abs/path`. */
export function socketPath(address: string): string {
  const path = address.startsWith('unix://') ? address.slice(7) : address.startsWith('unix:') ? address.slice(5) : address;
  if (!path.startsWith('/')) {
    throw new ErrInvalidArgument(`address ${JSON.stringify(address)} is not a unix socket; use unix:///absolute/path.sock`, {
      details: { path: address },
    });
  }
  if (Buffer.byteLength(path) > 107) {
    throw new ErrInvalidArgument(`socket path ${path} is longer than the 107 bytes a unix socket allows; choose a shorter --addr`, { details: { path } });
  }
  return path;
}

/** The canonical address of a socket path. */
export const addressOf = (path: string): string => `unix://${path}`;

/** Whether something accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes `path` free to bind: creates its directory, refuses a path that a live server answers on
 * or that is not a socket, and removes a stale socket (one nobody listens on).
 */
export async function clearSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket()) {
    throw new ErrFailedPrecondition(`${path} exists and is not a socket; remove it or choose another --addr`, { details: { path } });
  }
  if (await answers(path)) {
    throw new ErrAlreadyExists(`socket ${path} is held by a running server; stop it first or choose another --addr`, { details: { path } });
  }
  await unlink(path);
}

/** The gid of group `group` (a name from /etc/group, or a number). */
export async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const text = await readFile('/etc/group', 'utf8');
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new ErrNotFound(`group ${JSON.stringify(group)} does not exist (not in /etc/group); create it or give a gid`, { details: { id: group } });
}

/** Gives the bound socket its mode (0660) and owner (this process's user, group `gid` when given). */
export async function secureSocket(path: string, gid: number | undefined): Promise<void> {
  if (gid !== undefined) await chown(path, process.getuid?.() ?? 0, gid);
  await chmod(path, 0o660);
}
