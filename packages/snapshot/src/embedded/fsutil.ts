/** Filesystem helpers of the embedded backend: tree removal. */
import { rm } from 'node:fs/promises';

/** Removes a tree; a missing path is fine. */
export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}
