/**
 * kill -9 at every kill point of recording a cache key and removing it again (every metadata
 * commit and backend call; finalizing, which record() does first, has its own sweep in
 * crash-points.test.ts): the key is either there with its record, typed and mounting, or not there
 * at all — never a key without its record, nor a record held by a lost key; recording again then
 * works, and the usual crash checks hold (every record mounts, nothing unowned is left, prune --all
 * leaves nothing).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { kinds, withBench, type CrashBench } from './crash-bench.js';
import { CRASH_KEY_OP as KEY_OP, readFileOf } from './helpers.js';

const SWEPT = kinds.filter((k) => k.name !== 'embedded-native');

/** Checks the key invariant after a kill (the record is `id`) and records the key again. */
async function checkKey(bench: CrashBench, id: string): Promise<boolean> {
  return bench.open(async (cache) => {
    const rows = [];
    for await (const u of cache.diskUsage()) rows.push(u);
    assert.deepEqual(rows.map((u) => [u.id, u.mutable, u.inUse]), [[id, false, false]], 'the record is still there, once, not in use');
    const found = await cache.keys.lookup(KEY_OP, []);
    const keys = await cache.keys.keysOf(id);
    if (found) assert.deepEqual([rows[0]?.recordType, rows[0]?.description], ['frontend', 'RUN keys']);
    if (found) {
      assert.equal(found.id, id);
      assert.equal(await readFileOf(found, 'k'), 'k');
      assert.equal(keys.length, 1);
      await found.release();
    } else {
      assert.deepEqual(keys, [], 'no key was left behind');
      await cache.keys.record(KEY_OP, [], id, { description: 'RUN keys', recordType: 'frontend' });
      const again = await cache.keys.lookup(KEY_OP, []);
      assert.equal(again?.id, id, 'recording again after the kill works');
      await again?.release();
    }
    return found !== undefined;
  });
}

for (const kind of SWEPT) {
  describe(`cache key kill points on ${kind.name}`, () => {
    test('kill -9 at every kill point of keys.record and keys.remove: a key and its record are there together or the key is not', async (t) => {
      await withBench(kind, async (bench) => {
        const dry = await bench.run('keys');
        const events = Number(/^events (\d+)$/.exec(dry.at(-1) ?? '')?.[1]);
        assert.ok(events > 0, `the keys workload reports its kill points: ${dry.join(', ')}`);
        let withKey = 0;
        await bench.check(true);
        for (let k = 0; k < events; k++) {
          const out = await bench.run('keys', k);
          const id = /^record (\S+)$/.exec(out.find((l) => l.startsWith('record ')) ?? '')?.[1];
          assert.ok(id, `the worker printed its record: ${out.join(', ')}`);
          try {
            if (await checkKey(bench, id)) withKey++;
            await bench.check(true); // also prunes everything: the next run starts empty
          } catch (err) {
            throw new Error(`keys.record/remove killed at point ${k} of ${events}: ${String(err)}`, { cause: err });
          }
        }
        assert.ok(withKey > 0 && withKey < events, `the key was there after some kills (between its commit and its removal's), not after others (${withKey} of ${events})`);
        t.diagnostic(`keys.record and remove: ${events} kill points, key present after ${withKey}`);
      });
    });
  });
}

