/** Durability helpers on Node's own fs (no addon call). */
import { createWriteStream } from 'node:fs';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';

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

/** Partial files this process started (each write gets its own, also for the same path at once). */
let partials = 0;
const PARTIAL = /\.partial-(\d+)-\d+$/;

/**
 * Writes `chunks` to file `path` so that `path` only ever holds a complete file, also across a
 * crash or power loss: they go to `<path>.partial-<pid>-<n>`, which is fsynced, renamed to `path`
 * once the last is written, and the directory fsynced. A failure (of the writes, or thrown by
 * `chunks`, e.g. a digest check after the last chunk) removes the partial file and leaves `path` as
 * it was; a killed process leaves only the partial file (`removeStalePartials` drops it). Of
 * concurrent writes of one path (in one process or several), the last to finish wins, each whole.
 */
export async function writeFileWhole(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  const partial = `${path}.partial-${process.pid}-${++partials}`;
  try {
    await pipeline(chunks, createWriteStream(partial));
    await fsyncPath(partial);
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
  await fsyncPath(dirname(path));
}

/**
 * Whether process `pid` is gone (no such process): what a file or directory named for its writer's
 * pid can be removed by. A live process (also one of another user) is not gone.
 */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Whether `name` is a `writeFileWhole` partial file whose writer process is gone. */
function stalePartial(name: string): boolean {
  const pid = PARTIAL.exec(name)?.[1];
  return pid !== undefined && processGone(Number(pid));
}

/**
 * Removes from directory `dir` the partial files of `writeFileWhole` calls whose process was
 * killed (those of live processes stay: they may still finish). Returns the names removed.
 */
export async function removeStalePartials(dir: string): Promise<string[]> {
  const stale = (await readdir(dir)).filter(stalePartial);
  for (const name of stale) await rm(join(dir, name), { force: true });
  return stale;
}
