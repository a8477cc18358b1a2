/** Random access to a blob: a local file, a registry blob over HTTP range requests, a buffer. */
import { open, type FileHandle } from 'node:fs/promises';
import { ErrOutOfRange } from '@buildcache/errdefs';

/** Reads byte ranges of a blob of known size. */
export interface RangeReader {
  /** The blob's size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes from `offset` (both within the blob). */
  readAt(offset: number, length: number, options?: { signal?: AbortSignal }): Promise<Buffer>;
}

/** ErrOutOfRange unless [offset, offset+length) lies within a blob of `size` bytes. */
export function checkRange(size: number, offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new ErrOutOfRange(`range ${offset}+${length} lies outside ${what} (${size} bytes)`, { details: { offset, length, size } });
  }
}

/** A RangeReader over a buffer held in memory. */
export function bufferRangeReader(buf: Buffer): RangeReader {
  return {
    size: buf.length,
    readAt: (offset, length) => {
      checkRange(buf.length, offset, length, 'the buffer');
      return Promise.resolve(buf.subarray(offset, offset + length));
    },
  };
}

/** A RangeReader over a local file; `close()` when done. */
export async function fileRangeReader(path: string): Promise<RangeReader & { close(): Promise<void> }> {
  const fh: FileHandle = await open(path, 'r');
  const { size } = await fh.stat();
  return {
    size,
    async readAt(offset, length) {
      checkRange(size, offset, length, path);
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) throw new ErrOutOfRange(`${path} ended at ${offset + got}, before ${offset + length}`);
        got += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}
