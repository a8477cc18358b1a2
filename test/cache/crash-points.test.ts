/**
 * kill -9 of a process using the cache at every kill point of release, finalize, prune --all,
 * variant export and GC: every time the cache opens cleanly, every record it lists mounts, every
 * lease it left carries its owner (containerd's GC lease also an expiry), nothing is left that no
 * record owns, and `prune --all` then leaves no lease and no snapshot. And the GC debt is on disk
 * before a second caller that owes it goes on.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { MetadataStore } from '@buildcache/metadata';
import { kinds, withBench, type Workload } from './crash-bench.js';

const WORKLOADS: readonly Workload[] = ['release', 'finalize', 'prune-all', 'variants', 'gc'];
/** The cache logic is the same over both snapshotters: sweep one per backend. */
const SWEPT = kinds.filter((k) => k.name !== 'embedded-native');

for (const kind of SWEPT) {
  describe(`kill points on ${kind.name}`, () => {
    for (const workload of WORKLOADS) {
      test(`kill -9 at every kill point of ${workload}: every record mounts, prune --all leaves nothing`, async (t) => {
        await withBench(kind, async (bench) => {
          const dry = await bench.run(workload);
          const events = Number(/^events (\d+)$/.exec(dry.at(-1) ?? '')?.[1]);
          assert.ok(events > 0, `the ${workload} workload reports its kill points: ${dry.join(', ')}`);
          await bench.check(true);
          for (let k = 0; k < events; k++) {
            await bench.run(workload, k);
            try {
              await bench.check(true);
            } catch (err) {
              throw new Error(`${workload} killed at point ${k} of ${events}: ${String(err)}`, { cause: err });
            }
          }
          t.diagnostic(`${workload}: ${events} kill points`);
        });
      });
    }

    test('two concurrent callers owing a GC: the second goes on only once the debt is on disk', async () => {
      await withBench(kind, async (bench) => {
        await bench.run('owe-race');
        const store = await MetadataStore.open(join(bench.cacheRoot, 'metadata'), { logger: pino({ level: 'silent' }) });
        try {
          assert.equal((await store.get('.buildcache-state')).get('gc.pending'), true, 'the debt survived the kill');
        } finally {
          await store.close();
        }
      });
    });
  });
}
