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

/**
 * Writes `chunks` to file `path` so that `path` only ever holds a complete file (e.g. an archive a
 * user asked for): they go to `<path>.partial-<pid>`, renamed to `path` once the last is written. A
 * failure (of the writes, or thrown by `chunks`) removes the partial file and leaves `path` as it
 * was; a killed process leaves only the partial file.
 */
export async function writeFileWhole(path: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const partial = `${path}.partial-${process.pid}`;
  try {
    await pipeline(chunks, createWriteStream(partial));
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
}
