/**
 * du of committed records that still share their mutable record's data (issue 12): after a reopen,
 * du tells such pairs — and mutable records never committed — from their metadata, reading each
 * stored item once and loading no record; only what must be computed or repaired is loaded. A
 * mutable record loaded alone finds its twin through the ID it keeps, with no index search; one
 * made before it kept that ID is found through the index, or once its twin is loaded. Counted
 * (items read, records in memory, searches), not timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import { ErrNotFound } from '@buildcache/errdefs';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, usageCounts, writeFiles, type TestCache } from './helpers.js';

/** Counts calls of `cache`'s store `search` from now on. */
function countSearches(cache: CacheManager): () => number {
  const store = cache.context.store;
  const search = store.search.bind(store);
  let n = 0;
  store.search = (...args: Parameters<typeof search>) => {
    n++;
    return search(...args);
  };
  return () => n;
}

/** du's rows (the fields it reports, sorted), and the most records in memory while it ran. */
async function duRows(cache: CacheManager): Promise<{ rows: string[]; resident: number }> {
  const rows: string[] = [];
  let resident = 0;
  for await (const u of cache.diskUsage()) {
    resident = Math.max(resident, cache.context.records.size);
    rows.push(JSON.stringify([u.id, u.mutable, u.inUse, u.size, u.parents, u.usageCount, u.description]));
  }
  return { rows: rows.sort(), resident };
}

const rowOf = (id: string, mutable: boolean): string => JSON.stringify([id, mutable]).slice(0, -1);

interface Pair {
  readonly mutable: string;
  readonly committed: string;
}

/** Chains as the benchmark makes them (each record finalized by its child's new(); the last keeps its mutable twin), and one mutable record never committed. */
async function buildChains(t: TestCache, chains: number, depth: number): Promise<{ pairs: Pair[]; lone: string }> {
  const pairs: Pair[] = [];
  for (let c = 0; c < chains; c++) {
    let parent: ImmutableRef | undefined;
    for (let d = 0; d < depth; d++) {
      const m = await t.cache.new(parent, { retain: true, description: `chain ${c} depth ${d}` });
      await parent?.release();
      await writeFiles(m, { [`f-${c}-${d}`]: 'x'.repeat(100 + d) });
      const mutable = m.id;
      parent = await m.commit();
      if (d === depth - 1) pairs.push({ mutable, committed: parent.id });
    }
    await parent!.release();
  }
  const lone = await t.cache.new(undefined, { retain: true, description: 'never committed' });
  await writeFiles(lone, { 'lone.txt': 'alone' });
  await lone.release();
  return { pairs, lone: lone.id };
}

for (const kind of BACKENDS) {
  describe(`du of mutable records and their committed twins on ${kind.name}`, () => {
    test('after a reopen du reads each item once and loads no record; same rows; a pair whose mutable snapshot vanished is still repaired', async () => {
      const t = await openTestCache(kind);
      try {
        const { pairs, lone } = await buildChains(t, 3, 3);
        const stored = 2 * 3 + 2 * pairs.length + 1; // finalized records, pairs (two records each), the lone one
        let cache = await t.reopen();
        // Sizes are unknown (finalize resets them): the first du computes them from the snapshots, loading no record either.
        let before = cache.context.store.itemsLoaded;
        const first = await duRows(cache);
        assert.equal(first.resident, 0, 'the first du loaded a record');
        // Each stored item once, and for the lone mutable record the ID reserved for its twin (no such item).
        assert.equal(cache.context.store.itemsLoaded - before, stored + 1, 'items read by the first du');
        assert.equal(first.rows.length, 3 * 3 + 1, 'one row per pair, per finalized record and for the lone mutable record');
        for (const row of first.rows) {
          const [id, , , size] = JSON.parse(row) as [string, boolean, boolean, number];
          assert.equal(size, (await t.tb.backend.snapshotter.usage(id)).size, `size of ${id}`);
        }
        for (const { mutable, committed } of pairs) {
          assert.ok(first.rows.some((r) => r.startsWith(rowOf(mutable, true))), 'the mutable twin stands for the pair');
          assert.ok(!first.rows.some((r) => r.startsWith(JSON.stringify([committed]).slice(0, -1))), 'the committed twin is not reported');
        }
        assert.ok(first.rows.some((r) => r.startsWith(rowOf(lone, true))));

        cache = await t.reopen();
        const searches = countSearches(cache);
        before = cache.context.store.itemsLoaded;
        const again = await duRows(cache);
        assert.deepEqual(again.rows, first.rows, 'the sizes were stored');
        assert.equal(again.resident, 0, 'du loaded a record it could tell from its metadata');
        assert.equal(cache.context.store.itemsLoaded - before, stored + 1, 'items read by du');
        assert.equal(searches(), 0, 'du searched the index');

        // A finalize cut short after the snapshot commit (the mutable snapshot is gone): loading repairs, so du loads that pair.
        const [gone] = pairs;
        await t.tb.backend.snapshotter.remove(gone!.mutable);
        const after = await duRows(cache);
        assert.equal(after.rows.length, first.rows.length - 1);
        assert.ok(!after.rows.some((r) => r.startsWith(rowOf(gone!.mutable, true))));
        await assert.rejects(cache.get(gone!.committed), ErrNotFound);
      } finally {
        await t.close();
      }
    });

    test('a held committed twin makes its pair in use for du without loading it', async () => {
      const t = await openTestCache(kind);
      try {
        const { pairs } = await buildChains(t, 1, 1);
        const [pair] = pairs;
        await t.cache.setHeld(pair!.committed, 'test', true);
        const first = await duRows(t.cache);
        const cache = await t.reopen();
        const again = await duRows(cache);
        assert.deepEqual(again.rows, first.rows);
        assert.equal(again.resident, 0);
        assert.ok(again.rows.some((r) => r.startsWith(JSON.stringify([pair!.mutable, true, true, 0]).slice(0, -1))), 'the pair is in use');
        await cache.prune([{ all: true }]);
        assert.deepEqual(await usageCounts(cache), { inUse: 1, unused: 0 }, 'prune keeps the held pair (and deletes the lone record)');
      } finally {
        await t.close();
      }
    });

    test('a mutable record loaded alone finds its twin by the ID it keeps, with no search; records made before are found through the index or once their twin loads', async () => {
      const t = await openTestCache(kind);
      try {
        const { pairs } = await buildChains(t, 3, 1);
        const [kept, indexed, older] = pairs as [Pair, Pair, Pair];
        // As stores written before: `indexed` has no kept ID (found through the index); `older` has neither (nor an index entry).
        for (const { mutable } of [indexed, older]) {
          const item = await t.cache.context.store.get(mutable);
          item.delete('cache.equalImmutable');
          await item.commit();
        }
        const twinItem = await t.cache.context.store.get(older.committed);
        twinItem.set('cache.equalMutable', older.mutable); // without its index
        await twinItem.commit();

        let cache = await t.reopen();
        let searches = countSearches(cache);
        const got = await cache.get(kept.mutable);
        assert.equal(got.id, kept.committed, 'get of the mutable record returns its committed twin');
        await got.release();
        assert.equal(searches(), 0, 'no index search for a record that keeps its twin ID');

        const viaIndex = await cache.get(indexed.mutable);
        assert.equal(viaIndex.id, indexed.committed);
        await viaIndex.release();
        assert.equal(searches(), 1, 'a record made before it kept the ID is found through the index');

        // du loads the oldest pair (its mutable record names no twin): loading the twin links them, and the mutable record names it from then on.
        const rows = await duRows(cache);
        assert.ok(rows.rows.some((r) => r.startsWith(rowOf(older.mutable, true))));
        assert.ok(!rows.rows.some((r) => r.startsWith(JSON.stringify([older.committed]).slice(0, -1))));
        cache = await t.reopen();
        searches = countSearches(cache);
        for (const { mutable, committed } of [indexed, older]) {
          const ref = await cache.get(mutable);
          assert.equal(ref.id, committed, `the twin of ${mutable} after the repair`);
          assert.equal(await readFileOf(ref, `f-${pairs.findIndex((p) => p.mutable === mutable)}-0`), 'x'.repeat(100));
          await ref.release();
        }
        assert.equal(searches(), 0, 'repaired records keep their twin ID');
        assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 4 }, 'three pairs and the lone record; no second commit');
      } finally {
        await t.close();
      }
    });
  });
}
