/**
 * Batch sizes for reading LevelDB ranges that are usually short (an index entry or two, an item's
 * external values). classic-level sizes an iterator's native read buffer for the batch asked for
 * (64 bytes an entry, kept until V8 collects the iterator, not when it is closed), so reading a
 * one-key range as one batch of 1,000 holds 64 KiB of native memory for nothing.
 */
import type { Db } from './batch-writer.js';
import type { KeyRange } from './keys.js';

/** The sizes of successive reads of one range: 16, 64, 256, then 1,000 each. */
export function* growingBatches(): Generator<number, never> {
  for (let size = 16; ; size = Math.min(size * 4, 1000)) yield size;
}

/** Every key in `range`, in key order. */
export async function readKeys(db: Db, range: KeyRange): Promise<string[]> {
  const it = db.keys(range);
  const out: string[] = [];
  try {
    for (const size of growingBatches()) {
      const keys = await it.nextv(size);
      if (keys.length === 0) return out;
      out.push(...keys);
    }
  } finally {
    await it.close();
  }
  return out;
}
