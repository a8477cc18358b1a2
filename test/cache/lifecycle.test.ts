/** Record lifecycle on every backend: commit, release, retain, finalize, getMutable, reopen. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrInUse, ErrInvalidArgument, ErrNotFound, ErrReleased } from '@buildcache/errdefs';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, usageCounts, writeFiles, type TestCache } from './helpers.js';

for (const kind of BACKENDS) {
  describe(`cache lifecycle on ${kind.name}`, () => {
    let t: TestCache;
    before(async () => {
      t = await openTestCache(kind);
    });
    after(async () => {
      await t.close();
    });

    test('commit, release and retain follow BuildKit (checkDiskUsage sequence)', async () => {
      const { cache } = t;
      await assert.rejects(cache.get('nosuchrecord'), ErrNotFound);
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 0 });

      const active = await cache.new(undefined, { retain: true });
      await writeFiles(active, { 'a.txt': 'one' });
      await assert.rejects(cache.getMutable(active.id), ErrInUse);
      assert.deepEqual(await usageCounts(cache), { inUse: 1, unused: 0 });

      const snap = await active.commit();
      assert.deepEqual(await usageCounts(cache), { inUse: 1, unused: 0 });
      await assert.rejects(cache.getMutable(active.id), ErrInUse);
      await snap.release();
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 1 });

      const again = await cache.getMutable(active.id);
      assert.equal(await readFileOf(again, 'a.txt'), 'one');
      assert.deepEqual(await usageCounts(cache), { inUse: 1, unused: 0 });
      const snap2 = await again.commit();
      await snap2.finalize();
      await snap2.release();
      await assert.rejects(cache.getMutable(active.id), ErrNotFound);
      await assert.rejects(cache.getMutable(snap2.id), ErrInvalidArgument);

      const a = await cache.get(snap2.id);
      const b = await cache.get(snap2.id);
      assert.deepEqual(await usageCounts(cache), { inUse: 1, unused: 0 });
      await a.release();
      const child = await cache.new(b, { retain: true });
      assert.deepEqual(await usageCounts(cache), { inUse: 2, unused: 0 });
      const childSnap = await child.commit();
      await b.release();
      assert.deepEqual(await usageCounts(cache), { inUse: 2, unused: 0 }, 'parent stays in use through its child');
      await childSnap.release();
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 2 });

      const deleted: string[] = [];
      const result = await cache.prune([{}], { onDeleted: (u) => void deleted.push(u.id) });
      assert.equal(result.deleted, 2);
      assert.equal(deleted.length, 2);
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 0 });
    });

    test('a committed, not finalized, not retained record disappears on release', async () => {
      const { cache } = t;
      const m = await cache.new();
      const i = await m.commit();
      const id = i.id;
      await i.release();
      await assert.rejects(cache.get(id), ErrNotFound);
      await assert.rejects(cache.getMutable(m.id), ErrNotFound);
    });

    test('a released ref throws ErrReleased, and commit consumes the mutable handle', async () => {
      const { cache } = t;
      const m = await cache.new();
      const i = await m.commit();
      await assert.rejects(m.release(), ErrReleased);
      await assert.rejects(m.mounts(), ErrReleased);
      await i.release();
      await assert.rejects(i.release(), ErrReleased);
      assert.throws(() => i.clone(), ErrReleased);
    });

    test('new(parent) finalizes the parent and the child sees its files', async () => {
      const { cache } = t;
      const m = await cache.new();
      await writeFiles(m, { 'etc/base': 'base' });
      const base = await m.commit();
      const child = await cache.new(base);
      await assert.rejects(cache.getMutable(m.id), ErrNotFound, 'the equal mutable is gone after finalize');
      await writeFiles(child, { 'etc/child': 'child' });
      const top = await child.commit();
      assert.equal(await readFileOf(top, 'etc/base'), 'base');
      assert.equal(await readFileOf(top, 'etc/child'), 'child');
      const chain = top.layerChain();
      assert.deepEqual(chain.map((r) => r.id), [base.id, top.id]);
      for (const r of chain) await r.release();
      await top.release();
      await base.release();
      // base is finalized: it stays; top was never finalized: it went with its last handle
      const kept = await cache.get(base.id);
      await kept.release();
      await assert.rejects(cache.get(top.id), ErrNotFound);
      await cache.prune([{}]);
    });

    test('a read-only mount refuses writes', async () => {
      const { cache } = t;
      const m = await cache.new();
      await writeFiles(m, { 'f.txt': 'x' });
      const ro = await m.mount({ readonly: true });
      try {
        await assert.rejects(writeFile(join(ro.target, 'g.txt'), 'y'), { code: 'EROFS' });
      } finally {
        await ro.unmount();
      }
      const imm = await m.commit();
      await imm.finalize();
      const view = await imm.mount();
      try {
        await assert.rejects(writeFile(join(view.target, 'g.txt'), 'y'), { code: 'EROFS' });
        assert.equal(await readFileOf(imm, 'f.txt'), 'x');
      } finally {
        await view.unmount();
      }
      await imm.release();
      await t.cache.prune([{}]);
    });

    test('garbage left by a closed process is collected at open; a clean open collects nothing', async () => {
      const m = await t.cache.new();
      await writeFiles(m, { 'tmp.txt': 'discarded' });
      const key = m.id;
      await m.release(); // not retained: the record and its lease go, the snapshot waits for GC
      const snapshots = async (): Promise<string[]> => {
        const out: string[] = [];
        for await (const s of t.tb.backend.snapshotter.walk()) out.push(s.name);
        return out;
      };
      assert.ok((await snapshots()).includes(key), 'no GC ran yet');
      await t.reopen();
      assert.ok(!(await snapshots()).includes(key), 'open collected what the last process owed');
      let collections = 0;
      const gc = t.tb.backend.garbageCollect.bind(t.tb.backend);
      t.tb.backend.garbageCollect = async () => {
        collections++;
        return gc();
      };
      const { CacheManager } = await import('@buildcache/cache');
      const { pino } = await import('pino');
      await t.cache.close();
      t.cache = await CacheManager.open({ root: join(t.tb.dir, 'cache'), backend: t.tb.backend, logger: pino({ level: 'silent' }) });
      assert.equal(collections, 0, 'nothing owed: no collection at open');
      t.tb.backend.garbageCollect = gc;
    });

    test('finalizing a pair drops the mutable record and its lease without owing a collection', async () => {
      const { CacheManager } = await import('@buildcache/cache');
      const { pino } = await import('pino');
      await t.reopen(); // starts with nothing owed
      const m = await t.cache.new(undefined, { retain: true });
      await writeFiles(m, { 'kept.txt': 'data' });
      const imm = await m.commit();
      await imm.finalize(); // the commit takes the mutable snapshot: its lease holds nothing now
      const id = imm.id;
      await imm.release();
      const leases = (await t.tb.backend.leases.list()).map((l) => l.id);
      assert.ok(!leases.some((l) => l.startsWith(m.id)), `the mutable record's leases are gone: ${leases.join(', ')}`);
      let collections = 0;
      const gc = t.tb.backend.garbageCollect.bind(t.tb.backend);
      t.tb.backend.garbageCollect = async () => {
        collections++;
        return gc();
      };
      try {
        await t.cache.close();
        t.cache = await CacheManager.open({ root: join(t.tb.dir, 'cache'), backend: t.tb.backend, logger: pino({ level: 'silent' }) });
        assert.equal(collections, 0, 'nothing owed: no collection at open');
      } finally {
        t.tb.backend.garbageCollect = gc;
      }
      const again = await t.cache.get(id);
      assert.equal(await readFileOf(again, 'kept.txt'), 'data');
      await again.release();
      await assert.rejects(t.cache.get(m.id), ErrNotFound);
      await t.cache.prune([{ all: true }]);
    });

    test('reopening restores every record', async () => {
      const m1 = await t.cache.new(undefined, { description: 'kept base', retain: true });
      await writeFiles(m1, { 'x': '1' });
      const base = await m1.commit();
      const m2 = await t.cache.new(base, { description: 'kept child', recordType: 'exec.cachemount' });
      await writeFiles(m2, { 'y': '2' });
      const top = await m2.commit();
      await top.finalize();
      const ids = [base.id, top.id];
      await top.release();
      await base.release();
      const before = new Map<string, string | undefined>();
      for await (const u of t.cache.diskUsage()) before.set(u.id, u.description);

      const cache = await t.reopen();
      const after = new Map<string, string | undefined>();
      for await (const u of cache.diskUsage()) after.set(u.id, u.description);
      assert.deepEqual(after, before);
      const topAgain = await cache.get(ids[1]!);
      assert.equal(await readFileOf(topAgain, 'x'), '1');
      assert.equal(await readFileOf(topAgain, 'y'), '2');
      const parent = topAgain.parent();
      assert.equal(parent?.id, ids[0]);
      await parent?.release();
      await topAgain.release();
      await cache.prune([{ all: true }]);
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 0 });
    });

    test('after a reopen, the mutable record of a committed pair finds its twin: get returns it, getMutable drops it', async () => {
      const m = await t.cache.new(undefined, { retain: true });
      await writeFiles(m, { 'a.txt': 'one' });
      const snap = await m.commit();
      const twin = snap.id;
      await snap.release();

      let cache = await t.reopen(); // nothing loaded: get(m) must not commit m a second time
      const got = await cache.get(m.id);
      assert.equal(got.id, twin, 'get of the mutable record returns its committed twin');
      await got.release();
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 1 }, 'still one pair, no second commit');

      cache = await t.reopen();
      const again = await cache.getMutable(m.id);
      await assert.rejects(cache.get(twin), ErrNotFound, 'reopening the mutable record drops its committed twin');
      await writeFiles(again, { 'a.txt': 'two' });
      const snap2 = await again.commit();
      assert.notEqual(snap2.id, twin);
      assert.equal(await readFileOf(snap2, 'a.txt'), 'two');
      await snap2.release();
      await cache.prune([{ all: true }]);
      assert.deepEqual(await usageCounts(cache), { inUse: 0, unused: 0 });
    });
  });
}
