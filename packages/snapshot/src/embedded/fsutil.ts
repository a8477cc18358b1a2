/** Filesystem helpers of the embedded backend: directory fsync, tree removal, disk usage. */
import { open, rm } from 'node:fs/promises';
import { usage } from '@buildcache/sys';
import type { Usage } from '../types.js';

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

/**
 * Disk usage of a tree as containerd counts it: allocated blocks and distinct inodes (hard links
 * once), the top directory included; one walk inside `@buildcache/sys`.
 */
export async function diskUsage(dir: string): Promise<Usage> {
  return usage(dir);
}
