/**
 * Prune deletes records in batches (issue 12): the tombstones of a batch share one durable write,
 * and so do the metadata clears of the records whose leases went, so pruning many records takes
 * far fewer LevelDB batches than records. Counted through the store's write counters, not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS } from '../support/backends.js';
import { openSyntheticCache } from './helpers.js';

const RECORDS = 1280;

for (const kind of BACKENDS) {
  describe(`prune batches on ${kind.name}`, () => {
    test(`prune --all of ${RECORDS} records writes their tombstones and clears in batches, and leaves nothing`, async () => {
      const t = await openSyntheticCache(kind, RECORDS);
      try {
        const { cache } = t;
        const store = cache.context.store;
        const before = store.stats();
        const deleted: string[] = [];
        const r = await cache.prune([{ all: true }], { onDeleted: (info) => void deleted.push(info.id) });
        const after = store.stats();
        assert.equal(r.deleted, RECORDS);
        assert.equal(new Set(deleted).size, RECORDS, 'each record reported once');
        // Each record is written twice (tombstone, clear); one batch per record each would be 2 × RECORDS.
        const batches = after.batches - before.batches;
        assert.ok(batches <= RECORDS / 6, `${batches} LevelDB batches for ${RECORDS} records`);
        let left = 0;
        for await (const _ of cache.diskUsage()) left++;
        assert.equal(left, 0, 'no record left');
        assert.equal(cache.context.purging.size, 0, 'no deletion left queued');
        const items: string[] = [];
        for await (const id of store.ids()) items.push(id);
        assert.deepEqual(items.filter((id) => id.startsWith('synthetic')), [], 'no metadata left');
      } finally {
        await t.close();
      }
    });
  });
}
