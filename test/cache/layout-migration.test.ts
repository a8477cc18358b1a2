/**
 * Stores written before committed twins were indexed by their mutable record: a committed record
 * names its mutable twin without the `equalmutable:` index entry, and the mutable record does not
 * name its twin. The first open migrates them (one streaming scan, few items in memory), so that the
 * mutable record loaded alone finds its twin (get() returns it instead of committing a second time);
 * later opens read only the layout marker.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { MetadataStore } from '@buildcache/metadata';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, writeFiles } from './helpers.js';

const silent = pino({ level: 'silent' });
const STATE = '.buildcache-state';
const LAYOUT = 'records.layout';

for (const kind of BACKENDS) {
  describe(`record layout migration on ${kind.name}`, () => {
    test('a mutable record and its committed twin in the old shape: after a reopen, get(mutable) returns the twin', async () => {
      const t = await openTestCache(kind);
      try {
        const m = await t.cache.new(undefined, { retain: true });
        const mutableId = m.id;
        await writeFiles(m, { 'f.txt': 'old store' });
        const imm = await m.commit();
        const twin = imm.id;
        await imm.release();
        await t.reopen(async () => {
          // what a version before the twin index wrote
          const store = await MetadataStore.open(join(t.tb.dir, 'cache', 'metadata'), { logger: silent });
          const tw = await store.get(twin);
          tw.set('cache.equalMutable', mutableId); // no index
          await tw.commit();
          const mu = await store.get(mutableId);
          mu.delete('cache.equalImmutable');
          await mu.commit();
          const state = await store.get(STATE);
          state.delete(LAYOUT);
          await state.commit();
          assert.deepEqual(await store.search(`equalmutable:${mutableId}`), [], 'the old shape has no index entry');
          await store.close();
        });
        const ref = await t.cache.get(mutableId);
        try {
          assert.equal(ref.id, twin, 'get of the mutable record returns its committed twin, not a second commit');
          assert.equal(await readFileOf(ref, 'f.txt'), 'old store');
        } finally {
          await ref.release();
        }
        await t.reopen();
        assert.ok(t.cache.context.store.itemsLoaded <= 1, `a migrated store's open reads only the state item (${t.cache.context.store.itemsLoaded})`);
        const again = await t.cache.get(mutableId);
        assert.equal(again.id, twin);
        await again.release();
      } finally {
        await t.close();
      }
    });
  });
}

test('migrating 3000 old-shape records streams them: few items in memory after open, every twin indexed, the next open reads none', async () => {
  const N = 3000;
  const t = await openTestCache(BACKENDS[0]!, {}, async (root) => {
    const store = await MetadataStore.open(join(root, 'metadata'), { logger: silent });
    try {
      for (let i = 0; i < N; i += 100) {
        await Promise.all(Array.from({ length: 100 }, async (_, j) => {
          const item = await store.get(`oldtwin${String(i + j).padStart(6, '0')}`);
          item.set('cache.createdAt', Date.now());
          item.set('snapshot.committed', true);
          item.set('cache.equalMutable', `oldmutable${i + j}`);
          await item.commit();
          store.evict(item.id);
        }));
      }
    } finally {
      await store.close();
    }
  });
  try {
    const store = t.cache.context.store;
    assert.ok(store.itemsResident <= 1 + 32, `${store.itemsResident} items stayed in memory after the migration`);
    assert.equal((await store.search('equalmutable:', { prefix: true })).length, N, 'every committed twin is indexed');
    await t.reopen();
    assert.ok(t.cache.context.store.itemsLoaded <= 1, `the next open read ${t.cache.context.store.itemsLoaded} items`);
  } finally {
    await t.close();
  }
});
