/**
 * Closing the manager while records are being created (issue 12): close() waits for the creations
 * in flight; one that had not written its metadata yet fails with ErrClosed and takes its lease
 * with it, so no lease is left without a record — whenever close() comes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrClosed } from '@buildcache/errdefs';
import { BACKENDS } from '../support/backends.js';
import { openTestCache } from './helpers.js';

/** Milliseconds between starting new() and calling close(); 0 and -1 (no await at all) hit the creation early. */
const DELAYS = [-1, 0, 1, 3, 10];

for (const kind of BACKENDS) {
  describe(`close during record creation on ${kind.name}`, () => {
    test('close() while new() is in flight leaves no lease without a record', async () => {
      const t = await openTestCache(kind);
      try {
        const base = await (await t.cache.new()).commit();
        const outcomes: string[] = [];
        for (const delay of DELAYS) {
          const parent = await t.cache.get(base.id);
          const creating = t.cache.new(parent, { retain: true }).then(
            () => 'created',
            (err: unknown) => (err instanceof ErrClosed ? 'closed' : `failed: ${String(err)}`),
          );
          if (delay >= 0) await sleep(delay);
          await t.cache.close();
          const outcome = await creating;
          assert.ok(!outcome.startsWith('failed'), `new() ${outcome}`);
          outcomes.push(outcome);
          await t.reopen();
          const stored = new Set<string>();
          for await (const id of t.cache.context.store.ids()) stored.add(id);
          for (const lease of await t.tb.backend.leases.list()) {
            const record = lease.id.replace(/-(view|variants)$/, '');
            assert.ok(stored.has(record), `lease ${lease.id} was left without a record (close after ${delay} ms: ${outcome})`);
          }
        }
        assert.ok(outcomes.includes('closed'), `close() never came before a creation's metadata: ${outcomes.join(', ')}`);
      } finally {
        await t.close();
      }
    });
  });
}
