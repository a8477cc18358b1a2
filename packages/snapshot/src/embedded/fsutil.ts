/** Filesystem helpers of the embedded backend: directory fsync, tree removal. */
import { open, rm } from 'node:fs/promises';

/** fsyncs a directory so renames and creations inside it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Removes a tree; a missing path is fine. */
export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}
