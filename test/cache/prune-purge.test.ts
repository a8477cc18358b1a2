/**
 * How a prune's purge uses the backend (issue 17): the leases of a deletion step go in one
 * backend call (one durable write on the embedded backend), never one lease at a time, and
 * while that call is in flight other callers are served (du, get, search): the purge holds no
 * manager lock. Counted and ordered with a barrier on the backend call, never timed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseManager } from '@buildcache/snapshot';
import { BACKENDS } from '../support/backends.js';
import { syntheticId } from '../support/synthetic.js';
import { openSyntheticCache } from './helpers.js';

const RECORDS = 640;
/** Records of one prune deletion step (prune.ts's BATCH). */
const STEP = 64;

/** Counts the calls of `delete` and `deleteMany` on `leases`, running `before` ahead of each `deleteMany`. */
function watch(leases: LeaseManager, before: () => Promise<void> = async () => undefined): { delete: number; deleteMany: number } {
  const calls = { delete: 0, deleteMany: 0 };
  const del = leases.delete.bind(leases);
  const many = leases.deleteMany.bind(leases);
  leases.delete = (...args) => {
    calls.delete++;
    return del(...args);
  };
  leases.deleteMany = async (ids) => {
    calls.deleteMany++;
    await before();
    return many(ids);
  };
  return calls;
}

for (const kind of BACKENDS) {
  describe(`prune purges on ${kind.name}`, () => {
    test(`prune --all of ${RECORDS} records deletes their leases in one call per deletion step, none one at a time`, async () => {
      const t = await openSyntheticCache(kind, RECORDS);
      try {
        const calls = watch(t.tb.backend.leases);
        const r = await t.cache.prune([{ all: true }]);
        assert.equal(r.deleted, RECORDS);
        assert.equal(calls.delete, 0, 'no lease deleted one at a time');
        assert.ok(calls.deleteMany >= 1 && calls.deleteMany <= RECORDS / STEP, `${calls.deleteMany} lease-deletion calls for ${RECORDS} records`);
        assert.equal(t.cache.context.purging.size, 0, 'no deletion left queued');
      } finally {
        await t.close();
      }
    });

    test('du, get and search are served while a purge deletes leases', async () => {
      const t = await openSyntheticCache(kind, RECORDS);
      try {
        let entered!: () => void;
        const inFlight = new Promise<void>((res) => (entered = res));
        let release!: () => void;
        const released = new Promise<void>((res) => (release = res));
        watch(t.tb.backend.leases, async () => {
          entered();
          await released;
        });
        let pruned = false;
        // Synthetic record i was last used i × 500 ms ago: the prune keeps the newest 100.
        const prune = t.cache.prune([{ keepDurationMs: 100 * 500 }]).finally(() => (pruned = true));
        await inFlight;
        let seen = 0;
        for await (const _ of t.cache.diskUsage()) seen++;
        assert.ok(seen > 0 && seen <= RECORDS, `du listed ${seen} records`);
        const kept = await t.cache.get(syntheticId(0));
        await kept.release();
        assert.deepEqual(await t.cache.search('no-such-index'), []);
        assert.equal(pruned, false, 'the purge was still waiting for its lease deletion');
        release();
        const r = await prune;
        assert.ok(r.deleted > 0);
        assert.equal(t.cache.context.purging.size, 0, 'no deletion left queued');
      } finally {
        await t.close();
      }
    });
  });
}
