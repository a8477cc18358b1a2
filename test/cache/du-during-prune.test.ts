/**
 * du while a prune deletes records its scan has not reached yet (issue 17: du through the daemon
 * while a prune of 10,000 records runs). The records the prune deleted to the end (metadata cleared)
 * are skipped when du's scan reaches them, without reading them again one at a time — those serial
 * reads were du's longest waits during a prune. Counted (items read), not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BACKENDS } from '../support/backends.js';
import { openTestCache } from './helpers.js';
import { syntheticId, writeSyntheticRecords } from '../support/synthetic.js';

/** How many records du reads per batch (cache/src/stored.ts). */
const BATCH = 128;
const DAY = 24 * 3600_000;
/** Records kept (used recently); the ones after them were last used three days ago. */
const KEPT = 300;
const TOTAL = 1000;

for (const kind of BACKENDS) {
  describe(`du during a prune on ${kind.name}`, () => {
    test('records a prune deleted ahead of du are skipped without being read again', async () => {
      const now = Date.now();
      const t = await openTestCache(kind, {}, (root) =>
        writeSyntheticRecords(join(root, 'metadata'), TOTAL, (i) => (i >= KEPT ? { lastUsedAt: now - 3 * DAY } : {})),
      );
      try {
        const { cache } = t;
        const store = cache.context.store;
        const entries = cache.diskUsage()[Symbol.asyncIterator]();
        const ids: string[] = [];
        const first = await entries.next();
        if (!first.done) ids.push(first.value.id);
        // du's scan has read two batches (the second ahead of the reader); the prune deletes the
        // old records, all further on in the scan's ID order, to the end.
        const pruned = await cache.prune([{ keepDurationMs: 2 * DAY }]);
        assert.equal(pruned.deleted, TOTAL - KEPT);
        const loaded = store.itemsLoaded;
        for (let r = await entries.next(); !r.done; r = await entries.next()) ids.push(r.value.id);
        assert.deepEqual(ids, Array.from({ length: KEPT }, (_, i) => syntheticId(i)), 'du lists the kept records only');
        // Read from here on: the kept records du had not reached, none of the 700 deleted ones.
        assert.ok(store.itemsLoaded - loaded <= KEPT - 2 * BATCH, `${store.itemsLoaded - loaded} items read after the prune`);
      } finally {
        await t.close();
      }
    });
  });
}
