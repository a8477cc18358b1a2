/** du and prune on every backend: filters, ordering, keep-duration, space caps, cascade, in-use. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { keepBytes, sortForDeletion, type CacheManager, type ImmutableRef, type RecordType } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, writeFiles, type TestCache } from './helpers.js';

describe('keepBytes (BuildKit TestCalculateKeepBytes vectors)', () => {
  const vectors: [string, number, { total: number; free: number }, Record<string, number>, number][] = [
    ['empty', 1000, { total: 10000, free: 9000 }, {}, 0],
    ['only max', 1000, { total: 10000, free: 9000 }, { maxUsedSpace: 2000 }, 2000],
    ['only free', 7000, { total: 10000, free: 3000 }, { minFreeSpace: 5000 }, 5000],
    ['only free with min', 7000, { total: 10000, free: 3000 }, { minFreeSpace: 5000, reservedSpace: 6000 }, 6000],
    ['only free all', 7000, { total: 10000, free: 3000 }, { minFreeSpace: 5000, reservedSpace: 2000, maxUsedSpace: 4000 }, 4000],
    ['mixed max', 4000, { total: 10000, free: 2000 }, { maxUsedSpace: 2000 }, 2000],
    ['mixed free', 4000, { total: 10000, free: 2000 }, { minFreeSpace: 5000 }, 1000],
    ['mixed free with min', 4000, { total: 10000, free: 2000 }, { minFreeSpace: 5000, reservedSpace: 2000 }, 2000],
    ['mixed free all', 4000, { total: 10000, free: 2000 }, { minFreeSpace: 5000, reservedSpace: 2000, maxUsedSpace: 4000 }, 2000],
  ];
  for (const [name, total, disk, policy, want] of vectors) {
    test(name, () => assert.equal(keepBytes(total, disk, policy), want));
  }
  test('free space already enough: nothing to delete for space', () => {
    assert.equal(keepBytes(4000, { total: 10000, free: 8000 }, { minFreeSpace: 5000 }), Infinity);
  });
});

describe('sortForDeletion', () => {
  test('least recently and least frequently used first', () => {
    const items = [
      { id: 'new-often', lastUsedAt: 300, usageCount: 9 },
      { id: 'never', lastUsedAt: undefined, usageCount: 0 },
      { id: 'old-rare', lastUsedAt: 100, usageCount: 1 },
      { id: 'mid', lastUsedAt: 200, usageCount: 5 },
    ];
    assert.deepEqual(sortForDeletion(items).map((i) => i.id), ['never', 'old-rare', 'mid', 'new-often']);
  });
});

for (const kind of BACKENDS) {
  describe(`du and prune on ${kind.name}`, () => {
    let t: TestCache;
    let clock = 1_700_000_000_000;
    before(async () => {
      t = await openTestCache(kind, { now: () => clock });
    });
    after(async () => {
      await t.close();
    });

    /** A finalized record with one file of `bytes`, used (released) at the current clock. */
    async function record(cache: CacheManager, opts: { type?: RecordType; description?: string; bytes?: number; parent?: ImmutableRef } = {}): Promise<ImmutableRef> {
      const m = await cache.new(opts.parent, {
        ...(opts.type ? { recordType: opts.type } : {}),
        ...(opts.description ? { description: opts.description } : {}),
      });
      await writeFiles(m, { data: 'x'.repeat(opts.bytes ?? 1000) });
      const r = await m.commit();
      await r.finalize();
      return r;
    }

    test('filters: every field and operator, AND and OR; unknown fields refused', async () => {
      const { cache } = t;
      const a = await record(cache, { description: 'alpha build', type: 'regular' });
      const b = await record(cache, { description: 'beta cache', type: 'exec.cachemount' });
      const c = await record(cache, { parent: a, description: 'child of alpha', type: 'source.local' });
      await b.release();
      const ids = async (filters: string[]): Promise<string[]> => {
        const out: string[] = [];
        for await (const u of cache.diskUsage({ filters })) out.push(u.id);
        return out.sort();
      };
      assert.deepEqual(await ids([`id==${a.id}`]), [a.id]);
      assert.deepEqual(await ids([`id!=${a.id}`]), [b.id, c.id].sort());
      assert.deepEqual(await ids(['description~=^alpha']), [a.id]);
      assert.deepEqual(await ids(['type==exec.cachemount']), [b.id]);
      assert.deepEqual(await ids(['type==exec.cachemount', 'type==source.local']), [b.id, c.id].sort(), 'OR');
      assert.deepEqual(await ids(['type!=regular,description~=cache']), [b.id], 'AND');
      assert.deepEqual(await ids([`parents==${a.id}`]), [c.id]);
      assert.deepEqual(await ids(['inuse']), [a.id, c.id].sort());
      assert.deepEqual(await ids(['immutable', 'mutable']), [a.id, b.id, c.id].sort());
      assert.deepEqual(await ids(['private']), [a.id, b.id, c.id].sort());
      assert.deepEqual(await ids(['shared']), []);
      await assert.rejects(ids(['colour==red']), ErrInvalidArgument);
      await assert.rejects(ids(['type==']), ErrInvalidArgument);
      await c.release();
      await a.release();
      assert.equal((await cache.prune([{ filters: ['type==regular'] }])).deleted, 0, 'a is still held by its child c');
      assert.equal((await cache.prune([{ filters: ['type==source.local'] }])).deleted, 1);
      assert.equal((await cache.prune([{}])).deleted, 2);
    });

    test('in-use records and parents of live children are skipped; deletion cascades', async () => {
      const { cache } = t;
      const base = await record(cache);
      const mid = await record(cache, { parent: base });
      const top = await record(cache, { parent: mid });
      await base.release();
      await mid.release();
      const deleted: string[] = [];
      assert.equal((await cache.prune([{}], { onDeleted: (u) => void deleted.push(u.id) })).deleted, 0, 'all held by top');
      await top.release();
      await cache.prune([{}], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [top.id, mid.id, base.id], 'children first, then the parents they freed');
    });

    test('internal and frontend records need --all; keep-duration protects recent use', async () => {
      const { cache } = t;
      const internal = await record(cache, { type: 'internal' });
      const old = await record(cache);
      await internal.release();
      await old.release();
      clock += 72 * 3600_000;
      const recent = await record(cache);
      await recent.release();
      const deleted: string[] = [];
      await cache.prune([{ keepDurationMs: 48 * 3600_000 }], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [old.id]);
      await cache.prune([{}], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [old.id, recent.id]);
      await cache.prune([{ all: true }], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [old.id, recent.id, internal.id]);
    });

    test('maxUsedSpace deletes least recently used first until the cache fits; dry run deletes nothing', async () => {
      const { cache } = t;
      const refs: ImmutableRef[] = [];
      for (let i = 0; i < 4; i++) {
        clock += 1000;
        refs.push(await record(cache, { bytes: 50_000 }));
      }
      for (const r of refs) {
        clock += 1000;
        await r.release();
      }
      const sizes: number[] = [];
      for await (const u of cache.diskUsage()) sizes.push(u.size);
      const total = sizes.reduce((a, b) => a + b, 0);
      const one = Math.max(...sizes);
      const dry: string[] = [];
      const planned = await cache.prune([{ maxUsedSpace: total - one }], { dryRun: true, onDeleted: (u) => void dry.push(u.id) });
      assert.deepEqual(dry, [refs[0]!.id]);
      assert.equal(planned.deleted, 1);
      let count = 0;
      for await (const _ of cache.diskUsage()) count++;
      assert.equal(count, 4, 'dry run deleted nothing');

      const deleted: string[] = [];
      await cache.prune([{ maxUsedSpace: total - 2 * one }], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [refs[0]!.id, refs[1]!.id], 'oldest two');
      await cache.prune([{ reservedSpace: total, maxUsedSpace: 1 }], { onDeleted: (u) => void deleted.push(u.id) });
      assert.equal(deleted.length, 2, 'reservedSpace is a floor');
      await cache.prune([{}]);
    });

    test('releases in the same millisecond keep their order for LRU prune', async () => {
      const { cache } = t;
      clock += 1000;
      const refs: ImmutableRef[] = [];
      for (let i = 0; i < 3; i++) refs.push(await record(cache, { bytes: 50_000 }));
      for (const i of [2, 0, 1]) await refs[i]!.release(); // all at the same clock reading
      const sizes: number[] = [];
      for await (const u of cache.diskUsage()) sizes.push(u.size);
      const total = sizes.reduce((a, b) => a + b, 0);
      const deleted: string[] = [];
      await cache.prune([{ maxUsedSpace: total - 2 * Math.max(...sizes) }], { onDeleted: (u) => void deleted.push(u.id) });
      assert.deepEqual(deleted, [refs[2]!.id, refs[0]!.id], 'released first, deleted first');
      await cache.prune([{}]);
    });
  });
}
