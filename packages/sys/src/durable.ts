/** Durability helpers on Node's own fs (no addon call). */
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
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

/**
 * Writes `chunks` to file `path` so that `path` only ever holds a complete file (e.g. an archive a
 * user asked for): they go to `<path>.partial-<pid>-<n>`, renamed to `path` once the last is
 * written. A failure (of the writes, or thrown by `chunks`, e.g. a digest check after the last
 * chunk) removes the partial file and leaves `path` as it was; a killed process leaves only the
 * partial file. Of concurrent writes of one path, the last to finish wins, each whole.
 */
export async function writeFileWhole(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  const partial = `${path}.partial-${process.pid}-${++partials}`;
  try {
    await pipeline(chunks, createWriteStream(partial));
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
}
