/**
 * One-time migration of the record layout at open. Records committed before committed twins were
 * indexed by their mutable record (`equalmutable:<id>`) name their mutable record without the index
 * entry, and that mutable record does not name them: loaded alone (get() after a reopen) it would
 * not find its twin and would be committed a second time. The first open of such a store indexes
 * them, streaming every item once (bounded memory: each leaves memory once rewritten), and then
 * marks the store migrated; every later open reads only the marker (in the state item open reads
 * anyway).
 */
import type { ManagerContext } from './context.js';
import { STATE_ITEM } from './gc-debt.js';
import { INDEX_EQUAL_MUTABLE, RecordMetadata } from './record-metadata.js';

/** State key: the record layout the store's records are in (absent: before the twin index). */
export const LAYOUT_KEY = 'records.layout';
/** The current record layout: committed twins indexed by their mutable record. */
export const LAYOUT = 2;
/** The metadata key of a committed record's mutable twin (see `RecordMetadata.equalMutable`). */
const EQUAL_MUTABLE_KEY = 'cache.equalMutable';
/** Rewrites in flight at once (they share group commits). */
const WRITES = 32;

/** Brings the store's records to the current layout, once; the caller holds the manager lock before any record loads. */
export async function migrateOnOpen(cm: ManagerContext): Promise<void> {
  const state = await cm.store.get(STATE_ITEM);
  const layout = state.get(LAYOUT_KEY);
  if (typeof layout === 'number' && layout >= LAYOUT) return;
  const writes: Promise<void>[] = [];
  const rewrite = async (md: RecordMetadata): Promise<void> => {
    await md.commit();
    cm.store.evict(md.id);
  };
  let scanned = 0;
  let indexed = 0;
  for await (const item of cm.store.all()) {
    if (item.id === STATE_ITEM) continue;
    scanned++;
    const md = new RecordMetadata(item);
    const mutable = md.equalMutable;
    if (mutable === undefined || item.indexOf(EQUAL_MUTABLE_KEY) === INDEX_EQUAL_MUTABLE + mutable) {
      cm.store.evict(item.id);
      continue;
    }
    indexed++;
    md.equalMutable = mutable; // the same value, now with its index entry
    writes.push(rewrite(md));
    // at most one window of rewrites (and their items) in memory at a time
    if (writes.length >= WRITES) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  state.set(LAYOUT_KEY, LAYOUT);
  await state.commit();
  cm.logger.info({ scanned, indexed }, 'migrated the record layout');
}
