/**
 * Finding live records by index value. A record in memory is judged by its state; one that is not
 * by its metadata when that settles it (a finalized record, as du tells it), without loading it;
 * any other is loaded, which repairs it. The store's items are let go of a batch at a time, so a
 * search that matches every record holds one batch of them, not all.
 */
import { ErrNotFound } from '@buildcache/errdefs';
import type { ManagerContext } from './context.js';
import { loadRecordLocked } from './load.js';
import { RecordMetadata } from './record-metadata.js';
import { settledView } from './stored.js';

/** IDs of live records whose index value is `index` (or starts with it, with `prefix`); the caller holds the manager lock. */
export async function searchLocked(cm: ManagerContext, index: string, prefix: boolean): Promise<string[]> {
  const out: string[] = [];
  for await (const items of cm.store.searchBatches(index, { prefix })) {
    for (const item of items) {
      if (!cm.records.has(item.id) && !cm.purging.has(item.id) && settledView(new RecordMetadata(item))) {
        out.push(item.id);
        cm.store.evict(item.id);
        continue;
      }
      try {
        const rec = await loadRecordLocked(cm, item.id);
        if (!rec.isDead()) out.push(item.id);
      } catch (err) {
        if (!(err instanceof ErrNotFound)) throw err;
      }
    }
  }
  return out;
}
