/** Filesystem helpers of the embedded backend: full-fidelity copy, directory fsync, disk usage. */
import { execFile } from 'node:child_process';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { ErrFailedPrecondition } from '@buildcache/errdefs';
import type { Usage } from '../types.js';

const execFileP = promisify(execFile);

/**
 * Copies the contents of `src` into existing directory `dst`, keeping owners, modes, xattrs, hard
 * links and mtimes (`cp -a`), sharing extents where the filesystem can (`--reflink=auto`).
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  try {
    await execFileP('cp', ['-a', '--reflink=auto', '--', `${src}/.`, dst], { maxBuffer: 16 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? String(err);
    throw new ErrFailedPrecondition(`copying ${src} to ${dst} failed: ${stderr}`, { cause: err, details: { path: src } });
  }
}

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
 * once), the top directory included. Directory reads run with bounded concurrency.
 */
export async function diskUsage(dir: string, concurrency = 16): Promise<Usage> {
  const limit = pLimit(concurrency);
  const seen = new Set<string>();
  let size = 0;
  const account = (st: { dev: number; ino: number; blocks: number }): void => {
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    size += st.blocks * 512;
  };
  account(await lstat(dir));
  const visit = async (path: string): Promise<void> => {
    const entries = await limit(() => readdir(path, { withFileTypes: true }));
    await Promise.all(
      entries.map(async (e) => {
        const child = join(path, e.name);
        account(await limit(() => lstat(child)));
        if (e.isDirectory()) await visit(child);
      }),
    );
  };
  await visit(dir);
  return { size, inodes: seen.size };
}
