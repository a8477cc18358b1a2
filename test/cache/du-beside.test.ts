/**
 * du beside other calls (issue 17: du while a prune runs, through the daemon). A record du's scan has
 * read and that someone else then deletes to the end (its metadata cleared) is skipped, not "finished
 * off" again under the manager lock — which wrote two durable batches and deleted three leases per
 * record, and held every other call behind it while a prune ran. And du prepares the next batch while
 * the reader consumes the current one, so the reader does not wait for the store or the manager lock
 * at each batch boundary. Counted (store writes, items read), not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS } from '../support/backends.js';
import { openSyntheticCache } from './helpers.js';
import { syntheticId } from '../support/synthetic.js';

/** How many records du reads per batch (cache/src/stored.ts). */
const BATCH = 128;

/** Waits (bounded) until `done()` holds; returns whether it did. */
async function eventually(done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 1000 && !done(); i++) await new Promise((res) => setTimeout(res, 10));
  return done();
}

for (const kind of BACKENDS) {
  describe(`du beside other calls on ${kind.name}`, () => {
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

    test('while the reader holds the first entry, du has read the next batch; it can still stop early', async () => {
      const t = await openSyntheticCache(kind, 2 * BATCH + 10);
      try {
        const { cache } = t;
        const store = cache.context.store;
        const before = store.itemsLoaded;
        const entries = cache.diskUsage()[Symbol.asyncIterator]();
        assert.equal((await entries.next()).value?.id, syntheticId(0));
        // Nothing more is asked for; the second batch is read (and visited) meanwhile.
        assert.ok(await eventually(() => store.itemsLoaded - before >= 2 * BATCH), `${store.itemsLoaded - before} items read`);
        assert.ok(store.itemsLoaded - before < 2 * BATCH + 10, 'not the third batch');
        await entries.return(undefined);
        let n = 0;
        for await (const _ of cache.diskUsage()) n++;
        assert.equal(n, 2 * BATCH + 10);
      } finally {
        await t.close();
      }
    });
  });
}
