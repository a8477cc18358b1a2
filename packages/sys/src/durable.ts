/** Durability helpers on Node's own fs (no addon call). */
import { open } from 'node:fs/promises';

/**
 * fsync(2) of a file or directory: a file's bytes, or a directory's entries (creations, renames,
 * removals inside it), survive a crash once it resolves.
 */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
