/**
 * A search that matches many records (issue 12) holds a batch of them at a time: finalized records
 * are told live from their metadata, not loaded, and their items leave memory batch by batch, while
 * a record that needs loading (a mutable one) still is, and a deleted one is not found. Counted
 * through the manager's record map and the store's residency counter, not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BACKENDS } from '../support/backends.js';
import { instrument } from '../support/kill-points.js';
import { syntheticId, writeSyntheticRecords } from '../support/synthetic.js';
import { openTestCache } from './helpers.js';

const RECORDS = 3000;
/** The store's multi-get batch, twice (one batch looked at while the next is read), and a few more. */
const ONE_BATCH = 2 * 256 + 8;

const chainOf = (i: number): string => `sha256:${String(i).padStart(64, '0')}`;

for (const kind of BACKENDS) {
  describe(`search at scale on ${kind.name}`, () => {
    test(`a search matching ${RECORDS} records loads none and holds at most a batch of their items`, async () => {
      const t = await openTestCache(kind, {}, (root) =>
        writeSyntheticRecords(join(root, 'metadata'), RECORDS, (i) => ({ chainId: chainOf(i) })),
      );
      try {
        const { cache } = t;
        const store = cache.context.store;
        let maxItems = 0;
        let maxRecords = 0;
        instrument(
          store,
          () => {
            maxItems = Math.max(maxItems, store.itemsResident);
            maxRecords = Math.max(maxRecords, cache.context.records.size);
          },
          { names: ['get', 'getMany', 'evict'], nests: false },
        );
        const ids = await cache.search('chainid:', { prefix: true });
        assert.deepEqual(ids, Array.from({ length: RECORDS }, (_, i) => syntheticId(i)), 'every record, in index order');
        assert.equal(maxRecords, 0, 'no record was loaded to tell it live');
        assert.ok(maxItems <= ONE_BATCH, `${maxItems} metadata items were in memory at once`);
        assert.ok(store.itemsResident <= 1, `${store.itemsResident} items stayed in memory`);

        // What it says stays right: a record being used is found, one deleted is not, an exact search finds one.
        const held = await cache.get(syntheticId(5));
        try {
          await cache.prune([{ all: true, filters: [`id==${syntheticId(RECORDS - 1)}`] }]);
          const after = await cache.search('chainid:', { prefix: true });
          assert.equal(after.length, RECORDS - 1);
          assert.ok(after.includes(syntheticId(5)));
          assert.ok(!after.includes(syntheticId(RECORDS - 1)));
          assert.deepEqual(await cache.search(`chainid:${chainOf(7)}`), [syntheticId(7)]);
        } finally {
          await held.release();
        }
      } finally {
        await t.close();
      }
    });
  });
}
