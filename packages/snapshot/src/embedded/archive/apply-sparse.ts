/**
 * Writes a sparse layer entry as a file with holes: sized to its real size first, then each stored
 * data segment written at its offset (the map was checked by the tar reader: ascending, within the
 * size). Like every entry write, on a path whose parents `SafeTree` has checked, created with
 * O_EXCL|O_NOFOLLOW.
 */
import type { EntryContext } from './apply-entry.js';
import { createExclusive, setMeta, setXattrs } from './apply-entry.js';
import { corrupt } from './tar-format.js';
import type { TarHeader } from './tar-format.js';
import type { SparseMap } from './tar-sparse.js';

/** Creates the sparse file `h` at `path` from its stored segments (`data`, in map order) and restores its metadata. */
export async function writeSparseFile(ctx: EntryContext, path: string, data: AsyncIterable<Buffer>, h: TarHeader, map: SparseMap): Promise<void> {
  const { segments } = map;
  const fh = await createExclusive(path);
  try {
    await fh.truncate(map.realSize);
    let seg = -2;
    let pos = 0; // where the next byte goes
    let left = 0; // bytes left in the current segment
    for await (const chunk of data) {
      for (let done = 0; done < chunk.length; ) {
        while (left === 0) {
          seg += 2;
          if (seg >= segments.length) throw corrupt('more data than its sparse map places', h.name);
          pos = segments[seg]!;
          left = segments[seg + 1]!;
        }
        const n = Math.min(left, chunk.length - done);
        const { bytesWritten } = await fh.write(chunk, done, n, pos);
        done += bytesWritten;
        pos += bytesWritten;
        left -= bytesWritten;
      }
    }
    await setMeta(ctx, fh, h);
  } finally {
    await fh.close();
  }
  await setXattrs(ctx, path, h.xattrs, h.name);
}
