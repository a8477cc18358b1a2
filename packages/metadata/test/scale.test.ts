/** all() and search() over 100k items. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MetadataStore } from '../src/index.js';
import { tempDir } from './helpers.js';

const N = 100_000;

test('all() streams 100k items, each once, in order, with its values', { timeout: 300_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir, { sync: false });
  try {
    for (let chunk = 0; chunk < N; chunk += 1000) {
      await Promise.all(
        Array.from({ length: 1000 }, async (_, j) => {
          const i = chunk + j;
          const item = await store.get(`r${String(i).padStart(6, '0')}`);
          item.set('n', i);
          item.set('cache.chainID', `sha256:${i}`, { index: `chainid:sha256:${i}` });
          item.set('desc', { i, parent: i > 0 ? `r${i - 1}` : null });
          await item.commit();
        }),
      );
    }
    await store.close();

    store = await MetadataStore.open(dir);
    let n = 0;
    let prev = '';
    for await (const item of store.all()) {
      assert.ok(item.id > prev, `order: ${prev} then ${item.id}`);
      prev = item.id;
      const i = Number(item.id.slice(1));
      if (item.get('n') !== i || item.keys().length !== 3) assert.fail(`item ${item.id}: ${JSON.stringify(item.keys())}`);
      n++;
    }
    assert.equal(n, N);
    const hit = await store.search('chainid:sha256:77777');
    assert.deepEqual(hit.map((i) => i.id), ['r077777']);
    assert.equal((await store.search('chainid:sha256:9999', { prefix: true })).length, 11);

    // An early break closes the iterator; the store still closes cleanly.
    for await (const item of store.all()) {
      if (item.id === 'r000010') break;
    }
  } finally {
    await store.close();
    await cleanup();
  }
});

test('what a reopen replays stays bounded: 3 MB of commits leave at most 1 MiB of LevelDB log', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir, { sync: false });
  try {
    const text = 'x'.repeat(300);
    for (let chunk = 0; chunk < 10_000; chunk += 500) {
      await Promise.all(
        Array.from({ length: 500 }, async (_, j) => {
          const item = await store.get(`r${String(chunk + j).padStart(6, '0')}`);
          item.set('text', text);
          await item.commit();
        }),
      );
    }
  } finally {
    await store.close();
  }
  try {
    const logs = (await readdir(dir)).filter((f) => f.endsWith('.log'));
    const bytes = (await Promise.all(logs.map(async (f) => (await stat(join(dir, f))).size))).reduce((a, b) => a + b, 0);
    assert.ok(bytes <= 1 << 20, `${bytes} bytes of log (${logs.join(', ')}) would be replayed at the next open`);
  } finally {
    await cleanup();
  }
});
