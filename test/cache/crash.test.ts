/**
 * kill -9 of a process using the cache while it builds chains (new, write, commit, finalize,
 * getRemote with variants, release) and prunes, at seeded random kill points, 22 times per backend:
 * every time the cache opens cleanly, every record it lists mounts, every lease it left carries its
 * owner, and no lease or snapshot is left that no record owns. `BUILDCACHE_SEED=<seed>` replays.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SEED, kinds, prng, withBench } from './crash-bench.js';

const ROUNDS = 22;
/** Kill points are drawn below these (counted from open; a build iteration has about 40). */
const MAX_KILL_AT = { build: 300, prune: 80 } as const;

for (const kind of kinds) {
  describe(`crash safety on ${kind.name}`, () => {
    test(`kill -9 at ${ROUNDS} seeded kill points during build and prune: opens cleanly, no orphans`, async (t) => {
      t.diagnostic(`BUILDCACHE_SEED=${SEED}`);
      const random = prng(SEED);
      await withBench(kind, async (bench) => {
        let maxRecords = 0;
        for (let round = 0; round < ROUNDS; round++) {
          const mode = round % 4 === 3 ? 'prune' : 'build';
          const killAt = Math.floor(random() * MAX_KILL_AT[mode]);
          await bench.run(mode, killAt);
          try {
            maxRecords = Math.max(maxRecords, await bench.check(false));
          } catch (err) {
            throw new Error(`round ${round} (${mode}, killed at point ${killAt}, seed ${SEED}): ${String(err)}`, { cause: err });
          }
        }
        assert.ok(maxRecords > 0, 'the worker got far enough to create records');
      });
    });
  });
}
