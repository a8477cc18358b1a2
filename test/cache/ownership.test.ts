/**
 * Two caches (different roots) on one backend — one containerd namespace, or one embedded backend —
 * touch only what they own: opening, du, prune --all and GC of one never take the other's data.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { CacheManager, type ImmutableRef } from '@buildcache/cache';
import type { ActiveMount } from '@buildcache/snapshot';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, writeFiles } from './helpers.js';

for (const kind of BACKENDS) {
  describe(`two caches on one ${kind.name} backend`, () => {
    test("opening, du, prune --all and GC of cache B leave every record of cache A mountable", async () => {
      const a = await openTestCache(kind);
      let b: CacheManager | undefined;
      let view: ActiveMount | undefined;
      try {
        // Cache A: a finalized record with a blob and a compression variant, a retained mutable,
        // a committed (not finalized) retained record, and a view mounted while B works.
        const m1 = await a.cache.new(undefined, { description: 'finalized' });
        await writeFiles(m1, { 'f1.txt': 'one' });
        const r1 = await m1.commit();
        await r1.getRemote({ compression: 'gzip' });
        await r1.getRemote({ compression: 'zstd', force: true });
        const m2 = await a.cache.new(undefined, { retain: true });
        await writeFiles(m2, { 'f2.txt': 'two' });
        const m3 = await a.cache.new(undefined, { retain: true });
        await writeFiles(m3, { 'f3.txt': 'three' });
        const r3 = await m3.commit();
        const ids = { r1: r1.id, m2: m2.id, r3: r3.id };
        await m2.release();
        await r3.release();
        view = await r1.mount();
        // A lease no cache labelled as its own (an older version's, or another tool's).
        const foreign = `foreign-${ids.r1}`;
        await a.tb.backend.leases.create(foreign, { 'buildcache/record': 'someone-else' });

        b = await CacheManager.open({ root: join(a.tb.dir, 'cache-b'), backend: a.tb.backend, logger: pino({ level: 'silent' }) });
        const mb = await b.new();
        await writeFiles(mb, { 'b.txt': 'b' });
        const rb = await mb.commit();
        await rb.finalize();
        await rb.release();
        const seen: string[] = [];
        for await (const u of b.diskUsage()) seen.push(u.id);
        assert.equal(seen.length, 1, "B's du lists only B's record");
        assert.equal((await b.prune([{ all: true }])).deleted, 1, 'B prunes only its own record');
        await a.tb.backend.garbageCollect();
        await b.close();
        b = await CacheManager.open({ root: join(a.tb.dir, 'cache-b'), backend: a.tb.backend, logger: pino({ level: 'silent' }) });
        await a.tb.backend.garbageCollect();

        assert.equal(await readFile(join(view!.target, 'f1.txt'), 'utf8'), 'one', "A's mounted view survived");
        await view!.unmount();
        view = undefined;
        await r1.release();
        const expect: [string, string, string][] = [[ids.r1, 'f1.txt', 'one'], [ids.m2, 'f2.txt', 'two'], [ids.r3, 'f3.txt', 'three']];
        for (const [id, file, content] of expect) {
          const ref: ImmutableRef = await a.cache.get(id);
          try {
            assert.equal(await readFileOf(ref, file), content, `record ${id} of A still mounts`);
          } finally {
            await ref.release();
          }
        }
        const leases = (await a.tb.backend.leases.list()).map((l) => l.id);
        assert.ok(leases.includes(foreign), 'a lease without an owner label is never touched');
        assert.ok(leases.includes(`${ids.r1}-variants`), "A's variants lease survived");
        await a.tb.backend.leases.delete(foreign);
      } finally {
        await view?.unmount();
        await b?.close();
        await a.close();
      }
    });
  });
}
