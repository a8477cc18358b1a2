/**
 * du beside a deletion (issue 17): a record du's scan has read and that someone else then deletes
 * to the end (its metadata cleared) is skipped, not "finished off" again under the manager lock —
 * which wrote two durable batches and deleted three leases per record, and held every other call
 * behind it while a prune ran. Counted through the store's write counters, not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS } from '../support/backends.js';
import { openSyntheticCache } from './helpers.js';
import { syntheticId } from '../support/synthetic.js';

for (const kind of BACKENDS) {
  describe(`du beside a deletion on ${kind.name}`, () => {
    test('a record deleted between du reading it and visiting it is skipped, and du writes nothing', async () => {
      const t = await openSyntheticCache(kind, 3);
      try {
        const { cache } = t;
        const store = cache.context.store;
        const going = await cache.new(undefined, { description: 'released while du runs' });
        const entries = cache.diskUsage()[Symbol.asyncIterator]();
        // du takes the manager lock for its in-use set, then scans the store; the release queues
        // behind that lock and deletes the record (metadata cleared) before du visits its batch.
        const first = entries.next();
        await going.release();
        const writes = store.stats().writes;
        const ids: string[] = [];
        for (let r = await first; !r.done; r = await entries.next()) ids.push(r.value.id);
        assert.deepEqual(ids, [0, 1, 2].map(syntheticId), 'the deleted record is not listed');
        assert.equal(store.stats().writes - writes, 0, 'du wrote nothing');
        assert.equal(cache.context.purging.size, 0);
        const items: string[] = [];
        for await (const id of store.ids()) items.push(id);
        assert.ok(!items.includes(going.id), 'nothing of the deleted record is left in the store');
      } finally {
        await t.close();
      }
    });
  });
}
