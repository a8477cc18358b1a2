/** Automatic GC and the free-space cap, on the embedded backend. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, usageCounts, writeFiles } from './helpers.js';

const kind = BACKENDS.find((k) => k.name === 'embedded-overlayfs')!;

test('automatic GC runs after changes (throttled) and prunes by its policies', async () => {
  const t = await openTestCache(kind, { gc: { policies: [{ filters: ['type==exec.cachemount'] }], throttleMs: 50, intervalMs: 60_000 } });
  try {
    const keep = await t.cache.new(undefined, { description: 'regular' });
    await writeFiles(keep, { a: 'a' });
    const kept = await keep.commit();
    await kept.finalize();
    await kept.release();
    const cm = await t.cache.new(undefined, { recordType: 'exec.cachemount', retain: true });
    await writeFiles(cm, { b: 'b' });
    await cm.release();
    // the release pokes the scheduler; wait (bounded) for its run to take the cache mount
    for (let i = 0; i < 100 && (await usageCounts(t.cache)).unused !== 1; i++) await sleep(50);
    const left: string[] = [];
    for await (const u of t.cache.diskUsage()) left.push(u.recordType);
    assert.deepEqual(left, ['regular'], 'the cache mount was collected, the regular record kept');
  } finally {
    await t.close();
  }
});

test('minFreeSpace prunes until the disk would have that much free', async () => {
  const t = await openTestCache(kind);
  try {
    for (let i = 0; i < 3; i++) {
      const m = await t.cache.new();
      await writeFiles(m, { data: 'x'.repeat(40_000) });
      const r = await m.commit();
      await r.finalize();
      await r.release();
    }
    const sizes: number[] = [];
    for await (const u of t.cache.diskUsage()) sizes.push(u.size);
    const one = Math.max(...sizes);
    // pretend the disk is short by just over one record's size
    const disk = { total: 1e12, free: 1e9 };
    const result = await t.cache.prune([{ minFreeSpace: disk.free + one + 1 }], { diskStat: async () => disk });
    assert.equal(result.deleted, 2, 'deleting one is not enough, two are');
    const none = await t.cache.prune([{ minFreeSpace: disk.free }], { diskStat: async () => disk });
    assert.equal(none.deleted, 0, 'enough free space: nothing to delete');
  } finally {
    await t.close();
  }
});
