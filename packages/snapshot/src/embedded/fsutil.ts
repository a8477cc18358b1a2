/** Filesystem helpers of the embedded backend: tree removal. */
import { setTimeout as sleep } from 'node:timers/promises';
import { removeTree as removeNative } from '@buildcache/sys';

/** Errors that may pass (a mount being detached, a directory still being filled, fds running short). */
const TRANSIENT = new Set(['EBUSY', 'ENOTEMPTY', 'EMFILE', 'ENFILE']);

/**
 * Removes a tree (a missing path is fine) without following symlinks or entering a filesystem
 * mounted under it, in the addon (no JS object per entry); a transient failure is tried again
 * after 100, then 200, then 300 ms.
 */
export async function removeTree(path: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await removeNative(path);
    } catch (err) {
      if (attempt > 3 || !TRANSIENT.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      await sleep(100 * attempt);
    }
  }
}
