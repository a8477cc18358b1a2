/**
 * Atomicity and durability under kill -9: a child process commits multi-key updates to many
 * items in a loop and reports each resolved commit; it is killed with SIGKILL at random
 * moments, and after each kill every item must be wholly at one version, at least the last
 * one reported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { MetadataStore } from '../src/index.js';
import { expected } from './fixtures/crash-values.js';
import { rawKeys, spawnFixture, tempDir } from './helpers.js';

const ITEMS = 40;
const KEYS = 8;
const WORKERS = 8;
const ROUNDS = 24;

/** Checks the whole store against the highest reported version of each item; returns the versions. */
async function verify(dir: string, reported: Map<string, number>): Promise<number[]> {
  const store = await MetadataStore.open(dir);
  const versions: number[] = [];
  try {
    for (let i = 0; i < ITEMS; i++) {
      const id = `item${i}`;
      const item = await store.get(id);
      const v = item.get<number>('version') ?? 0;
      versions.push(v);
      assert.ok(v >= (reported.get(id) ?? 0), `${id}: version ${v} on disk, but ${reported.get(id)} was reported committed`);
      if (v === 0) {
        assert.deepEqual(item.keys(), [], `${id}: keys without a version`);
        continue;
      }
      for (let j = 0; j < KEYS; j++) assert.deepEqual(item.get(`k${j}`), expected(j, v), `${id} k${j} at version ${v}`);
      assert.equal(item.has('odd'), v % 2 === 1, `${id}: odd at version ${v}`);
      assert.equal(item.indexOf('version'), `ver:${id}:${v}`);
      assert.deepEqual((await store.search(`ver:${id}:${v}`)).map((x) => x.id), [id]);
    }
  } finally {
    await store.close();
  }
  // Exactly one index key per item: the one of its current version (stale ones were removed atomically).
  const indexKeys = (await rawKeys(dir, 'i\u0000ver:')).sort();
  const want = versions.flatMap((v, i) => (v === 0 ? [] : [`i\u0000ver:item${i}:${v}\u0000item${i}`])).sort();
  assert.deepEqual(indexKeys, want);
  return versions;
}

test('kill -9 during commits leaves every item wholly old or wholly new, and keeps resolved commits', { timeout: 300_000 }, async (t) => {
  const { dir, cleanup } = await tempDir();
  const reported = new Map<string, number>();
  let totalReported = 0;
  let landedUnreported = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const child = spawnFixture('crash-writer.js', [dir, String(ITEMS), String(KEYS), String(WORKERS)]);
      await child.waitFor((l) => l === 'ready');
      await delay(5 + Math.floor(Math.random() * 120));
      child.proc.kill('SIGKILL');
      const exit = await child.exited;
      assert.equal(exit.signal, 'SIGKILL', `writer exited on its own (code ${exit.code})`);
      for (const line of child.lines) {
        const [id, v] = line.split(' ');
        if (id === undefined || v === undefined || !id.startsWith('item')) continue;
        reported.set(id, Math.max(reported.get(id) ?? 0, Number(v)));
        totalReported++;
      }
      const versions = await verify(dir, reported);
      versions.forEach((v, i) => {
        if (v > (reported.get(`item${i}`) ?? 0)) landedUnreported++;
      });
    }
    assert.ok(totalReported > ROUNDS, `the writer committed too little to test anything (${totalReported})`);
    t.diagnostic(`${totalReported} commits reported over ${ROUNDS} kills; ${landedUnreported} item versions landed unreported`);
  } finally {
    await cleanup();
  }
});
