/**
 * Records load on first use and leave memory when nothing needs them (issue 12): opening a cache of
 * many records loads none of them; du streams them, loading each exactly once per du (its first row
 * comes before most are loaded); after du and after prune only a bounded number of records (and
 * metadata items) stay in memory. Counted through the store's load and residency counters, not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { instrument } from '../support/kill-points.js';
import { openSyntheticCache, openTestCache, readFileOf, writeFiles } from './helpers.js';

const RECORDS = 20_000;
/** Records (and items) that may stay in memory once nothing needs them: the manager's sweep threshold. */
const FEW = 1024;

function assertFewResident(cache: CacheManager, when: string): void {
  const records = cache.context.records.size;
  const items = cache.context.store.itemsResident;
  assert.ok(records <= FEW, `${when}: ${records} records stayed in memory`);
  assert.ok(items <= FEW + 1, `${when}: ${items} metadata items stayed in memory`);
}

for (const kind of BACKENDS) {
  describe(`lazy loading on ${kind.name}`, () => {
    test(`opening ${RECORDS} records loads none of them; du streams them, loading each once; du and prune leave few in memory`, async () => {
      const t = await openSyntheticCache(kind, RECORDS);
      try {
        const { cache } = t;
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
        assertFewResident(cache, 'after du');
        seen = 0;
        for await (const _ of cache.diskUsage()) seen++;
        assert.equal(seen, RECORDS);
        assert.equal(loaded() - atOpen, 2 * RECORDS, 'a second du read every record once more (they had left memory)');
        assertFewResident(cache, 'after a second du');
        // Prune streams every record too; the last thousand (whole chains) go.
        const pruned = await cache.prune([{ all: true, filters: ['id~=^synthetic00019'] }]);
        assert.equal(pruned.deleted, 1000);
        assertFewResident(cache, 'after prune');
        seen = 0;
        for await (const _ of cache.diskUsage()) seen++;
        assert.equal(seen, RECORDS - 1000);
      } finally {
        await t.close();
      }
    });

    test('a clean reopen lists no leases: it removes the temporary leases the last manager named at close', async () => {
      const t = await openTestCache(kind);
      try {
        const m = await t.cache.new();
        await writeFiles(m, { 'f.txt': 'kept' });
        const r = await m.commit();
        await r.finalize();
        const id = r.id;
        await (await r.mount()).unmount(); // the view (and its temporary lease) stays while r is held
        const leaseIds = async (): Promise<string[]> => (await t.tb.backend.leases.list()).map((l) => l.id);
        assert.ok((await leaseIds()).includes(`${id}-view`), 'the view lease exists while the record is held');
        await t.cache.close();
        let listed = false;
        instrument(t.tb.backend.leases, () => void (listed = true), { names: ['list'] });
        t.cache = await CacheManager.open({ root: join(t.tb.dir, 'cache'), backend: t.tb.backend, logger: pino({ level: 'silent' }) });
        assert.equal(listed, false, 'opening after a clean close listed leases');
        assert.ok(!(await leaseIds()).includes(`${id}-view`), 'the view lease named at close was removed');
        assert.ok((await leaseIds()).includes(id), "the record's own lease stays");
        const again = await t.cache.get(id);
        try {
          assert.equal(await readFileOf(again, 'f.txt'), 'kept');
        } finally {
          await again.release();
        }
      } finally {
        await t.close();
      }
    });
  });
}
