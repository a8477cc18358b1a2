/**
 * The note a daemon (`buildcache serve`) leaves in the cache root while it owns the cache: its
 * address and PID, so that a direct open that finds the store locked can say where to go instead.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The file in the cache root that names the daemon serving it. */
export const DAEMON_FILE = 'daemon.json';

/** Records that the daemon at `address` (this process) owns the cache at `root`. */
export async function writeDaemonMarker(root: string, address: string): Promise<void> {
  const tmp = join(root, `.${DAEMON_FILE}.${process.pid}`);
  await writeFile(tmp, JSON.stringify({ address, pid: process.pid }) + '\n', { mode: 0o644 });
  await rename(tmp, join(root, DAEMON_FILE));
}

/** Removes the note (at clean shutdown). */
export async function removeDaemonMarker(root: string): Promise<void> {
  await rm(join(root, DAEMON_FILE), { force: true });
}

/** The address of the daemon serving the cache at `root`, if its note names a live process. */
export async function runningDaemon(root: string): Promise<string | undefined> {
  let note: { address?: unknown; pid?: unknown };
  try {
    note = JSON.parse(await readFile(join(root, DAEMON_FILE), 'utf8')) as typeof note;
  } catch {
    return undefined;
  }
  if (typeof note.address !== 'string' || typeof note.pid !== 'number') return undefined;
  try {
    process.kill(note.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return note.address;
}
