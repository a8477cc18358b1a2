/**
 * Reading index ranges, which are usually short (an entry or two), in batches that start small.
 * classic-level sizes an iterator's native read buffer for the batch asked for (64 bytes an entry,
 * kept until V8 collects the iterator, not when it is closed), so reading a one-key range as one
 * batch of 1,000 holds 64 KiB of native memory for nothing.
 */
import type { Db } from './batch-writer.js';
import { exactIndexRange, parseIndexKey, prefixIndexRange, prefixIndexStart } from './keys.js';

/** The sizes of successive reads of one range: 16, 64, 256, then 1,000 each. */
function* growingBatches(): Generator<number, never> {
  for (let size = 16; ; size = Math.min(size * 4, 1000)) yield size;
}

/** An entry of an index: the index string and the ID of the item findable under it. */
export interface IndexEntry {
  readonly index: string;
  readonly id: string;
}

/**
 * The entries under `index` (exactly that string, or with `prefix` every index string starting
 * with it), each ID once, in index order, and how many keys were read; malformed keys are passed
 * to `malformed` and skipped.
 */
export async function readIndex(
  db: Db,
  index: string,
  prefix: boolean,
  malformed: (key: string) => void,
): Promise<{ entries: IndexEntry[]; keysRead: number }> {
  const start = prefixIndexStart(index);
  const it = db.keys(prefix ? prefixIndexRange(index) : exactIndexRange(index));
  const entries: IndexEntry[] = [];
  const seen = new Set<string>();
  let keysRead = 0;
  try {
    for (const size of growingBatches()) {
      const keys = await it.nextv(size);
      keysRead += keys.length;
      if (keys.length === 0) break;
      for (const dbKey of keys) {
        if (!dbKey.startsWith(start)) return { entries, keysRead };
        const parsed = parseIndexKey(dbKey);
        if (parsed === undefined || (!prefix && parsed.index !== index)) malformed(dbKey);
        else if (!seen.has(parsed.id)) {
          seen.add(parsed.id);
          entries.push(parsed);
        }
      }
    }
  } finally {
    await it.close();
  }
  return { entries, keysRead };
}
