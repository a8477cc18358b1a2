/**
 * getMutable drops a record's committed twin and then reserves a new twin ID; killed in between,
 * the mutable record still names the dropped twin's ID, and the next commit reuses it. kill -9 at
 * every kill point of getMutable (backend calls, metadata commits and clears), then a process that
 * commits the mutable record (reusing the ID or not), finalizes it and is killed too: the next open
 * (repair after a crash: stale leases, GC) keeps the committed record — it lists, mounts with its
 * data, its lease holds its snapshot also after a collection — and prune --all then leaves nothing.
 * (No lease, snapshot or view is ever named by a twin that was not finalized, and finalizing one
 * drops its mutable record, so a reused ID finds nothing of the old twin's in the backend.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { kinds, withBench } from './crash-bench.js';
import { readFileOf } from './helpers.js';

/** The cache logic is the same over both snapshotters: one per backend. */
const SWEPT = kinds.filter((k) => k.name !== 'embedded-native');

/** The value of `<name> <value>` in a worker's output. */
function said(lines: readonly string[], name: string): string {
  const line = lines.find((l) => l.startsWith(`${name} `));
  assert.ok(line, `the worker said its ${name}: ${lines.join(', ')}`);
  return line.slice(name.length + 1);
}

for (const kind of SWEPT) {
  describe(`getMutable's twin ID on ${kind.name}`, () => {
    test('kill -9 at every kill point of getMutable, then a commit and finalize killed too: the committed record keeps its lease, snapshot and data', async (t) => {
      await withBench(kind, async (bench) => {
        const dry = await bench.run('get-mutable');
        const events = Number(said(dry, 'events'));
        assert.ok(events > 0);
        await bench.check(true);
        let reused = 0;
        for (let k = 0; k < events; k++) {
          const killed = await bench.run('get-mutable', k);
          const mutableId = said(killed, 'record');
          const oldTwin = said(killed, 'twin');
          const recommitted = await bench.run('recommit', undefined, mutableId);
          const twin = said(recommitted, 'twin');
          // the dropped twin's record was gone, and its ID went to the new committed record
          if (twin === oldTwin && said(recommitted, 'named') === `${oldTwin} free`) reused++;
          try {
            await bench.open(async (cache, backend) => {
              for (const collected of [false, true]) {
                if (collected) await backend.garbageCollect();
                const ref = await cache.get(twin);
                try {
                  assert.equal(ref.id, twin);
                  assert.equal(await readFileOf(ref, 't'), 'twin data', `the committed record's data (after a collection: ${collected})`);
                } finally {
                  await ref.release();
                }
                const held = (await backend.leases.listResources(twin)).filter((r) => r.type.startsWith('snapshots/')).map((r) => r.id);
                assert.deepEqual(held, [twin], `lease ${twin} holds the committed record's snapshot`);
              }
            });
            await bench.check(true);
          } catch (err) {
            throw new Error(`getMutable killed at point ${k} of ${events} (twin ID ${twin === oldTwin ? 'reused' : 'new'}): ${String(err)}`, { cause: err });
          }
        }
        t.diagnostic(`${events} kill points; the dropped twin's ID was reused after ${reused} of them`);
        assert.ok(reused > 0, 'some kill point left the mutable record naming the dropped twin, whose ID was then reused');
      });
    });
  });
}
