/**
 * Records held by something outside the cache (`setHeld`, e.g. the layer store) on every backend:
 * du shows them in use, no prune (`--all`, space caps) deletes them or the parents under them, the
 * mark survives a reopen, and once let go of they are pruned as usual.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ErrNotFound } from '@buildcache/errdefs';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, writeFiles, type TestCache } from './helpers.js';

for (const kind of BACKENDS) {
  describe(`held records on ${kind.name}`, () => {
    let t: TestCache;
    before(async () => {
      t = await openTestCache(kind);
    });
    after(async () => {
      await t.close();
    });
    const inUse = async (): Promise<Map<string, boolean>> => {
      const m = new Map<string, boolean>();
      for await (const u of t.cache.diskUsage()) m.set(u.id, u.inUse);
      return m;
    };

    test('a held record and its parent: in use for du, kept by prune --all and a space cap, across a reopen; let go of, pruned', async () => {
      const base = await t.cache.new(undefined, { description: 'base' });
      await writeFiles(base, { a: 'a' });
      const baseRef = await base.commit();
      const top = await t.cache.new(baseRef, { description: 'top' });
      await writeFiles(top, { b: 'b' });
      const topRef = await top.commit();
      await topRef.finalize();
      await t.cache.setHeld(topRef.id, 'someone', true);
      await t.cache.setHeld(topRef.id, 'someone', true); // idempotent
      const ids = [baseRef.id, topRef.id];
      await topRef.release();
      await baseRef.release();
      assert.deepEqual([...(await inUse()).entries()].sort(), ids.map((id) => [id, true]).sort(), 'both in use (the parent under a held record)');
      assert.equal((await t.cache.prune([{ all: true }])).deleted, 0);
      assert.equal((await t.cache.prune([{ all: true, maxUsedSpace: 1 }])).deleted, 0);
      await t.reopen();
      assert.equal((await t.cache.prune([{ all: true }])).deleted, 0, 'the mark is durable');
      await t.cache.setHeld(topRef.id, 'other', true);
      await t.cache.setHeld(topRef.id, 'someone', false);
      assert.equal((await t.cache.prune([{ all: true }])).deleted, 0, 'another holder still holds it');
      await t.cache.setHeld(topRef.id, 'other', false);
      assert.equal((await inUse()).get(topRef.id), false);
      assert.equal((await t.cache.prune([{ all: true }])).deleted, 2);
      await assert.rejects(t.cache.setHeld(topRef.id, 'someone', true), ErrNotFound);
    });
  });
}
