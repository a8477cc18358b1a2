/**
 * Records load on first use (issue 12): opening a cache of many records loads none of them, and
 * du streams them, loading each exactly once (its first row comes before most are loaded). Counted through the metadata store's load counter, not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { writeSyntheticRecords } from '../support/synthetic.js';

const RECORDS = 20_000;

for (const kind of BACKENDS) {
  describe(`lazy loading on ${kind.name}`, () => {
    test(`opening ${RECORDS} records loads none of them; du streams them, loading each once; a second du loads none`, async () => {
      const tb = await kind.open();
      try {
        const root = join(tb.dir, 'cache');
        await writeSyntheticRecords(join(root, 'metadata'), RECORDS);
        const cache = await CacheManager.open({ root, backend: tb.backend, logger: pino({ level: 'silent' }) });
        try {
          const loaded = (): number => cache.context.store.itemsLoaded;
          const atOpen = loaded();
          assert.ok(atOpen <= 1, `open loaded ${atOpen} items (only the manager's own state item may be read)`);
          assert.equal(cache.context.records.size, 0, 'no record in memory after open');
          let seen = 0;
          let loadedAtFirstRow = -1;
          for await (const _ of cache.diskUsage()) if (seen++ === 0) loadedAtFirstRow = loaded() - atOpen;
          assert.equal(seen, RECORDS);
          assert.ok(loadedAtFirstRow < RECORDS / 10, `du streams: ${loadedAtFirstRow} records loaded before its first row`);
          assert.equal(loaded() - atOpen, RECORDS, 'du loaded every record exactly once');
          seen = 0;
          for await (const _ of cache.diskUsage()) seen++;
          assert.equal(seen, RECORDS);
          assert.equal(loaded() - atOpen, RECORDS, 'a second du loaded nothing more');
        } finally {
          await cache.close();
        }
      } finally {
        await tb.close();
      }
    });
  });
}
