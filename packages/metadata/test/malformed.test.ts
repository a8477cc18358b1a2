/** Keys and values the store did not write itself: skipped with a warning, never a hang. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Level } from 'level';
import { MetadataStore } from '../src/index.js';
import { captureLogger, rawKeys, tempDir } from './helpers.js';

const NUL = '\u0000';

test('malformed keys and values are skipped with a logged warning', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const setup = await MetadataStore.open(dir);
    for (const id of ['good', 'other']) {
      const item = await setup.get(id);
      item.set('k', id, { index: 'idx' });
      item.set('tag', 1, { index: `tag:${id}` });
      await item.commit();
    }
    await setup.close();

    const db = new Level<string, string>(dir);
    await db.batch([
      { type: 'put', key: `v${NUL}`, value: '{}' },
      { type: 'put', key: `v${NUL}a${NUL}b`, value: '{"k":{"v":1}}' },
      { type: 'put', key: `v${NUL}notjson`, value: 'not json' },
      { type: 'put', key: `v${NUL}array`, value: '[1,2]' },
      {
        type: 'put',
        key: `v${NUL}good`,
        value: JSON.stringify({
          k: { i: 'idx', v: 'good' },
          tag: { i: 'tag:good', v: 1 },
          bare: 5,
          noenvelope: { x: 1 },
          badindex: { i: 7, v: 1 },
          '': { v: 1 },
        }),
      },
      { type: 'put', key: `i${NUL}nosep`, value: '' },
      { type: 'put', key: `i${NUL}idx${NUL}`, value: '' },
      { type: 'put', key: `i${NUL}idx${NUL}ghost`, value: '' },
      { type: 'put', key: `i${NUL}idx${NUL}a${NUL}b`, value: '' },
      { type: 'put', key: `i${NUL}tag:mid`, value: '' },
      { type: 'put', key: 'zzz-unknown-space', value: 'x' },
    ]);
    await db.close();

    const { logger, records } = captureLogger();
    const store = await MetadataStore.open(dir, { logger });
    try {
      const listed: string[] = [];
      for await (const item of store.all()) listed.push(item.id);
      assert.deepEqual(listed, ['good', 'other']);
      const good = await store.get('good');
      assert.deepEqual(good.keys(), ['k', 'tag'], 'malformed values of a good item are left out');
      assert.ok(records.some((r) => r.level === 40 && String(r.msg).includes('malformed value key')), JSON.stringify(records));
      assert.ok(records.some((r) => r.id === 'notjson' && String(r.msg).includes('malformed values')));
      assert.ok(records.some((r) => r.id === 'good' && Array.isArray(r.problems) && r.problems.length === 4));
      assert.deepEqual((await store.get('notjson')).keys(), []);

      records.length = 0;
      assert.deepEqual((await store.search('idx')).map((i) => i.id), ['good', 'other']);
      assert.ok(records.some((r) => String(r.msg).includes('malformed index key')));
      assert.ok(records.some((r) => String(r.msg).includes('points to no matching value') && r.id === 'ghost'));

      records.length = 0;
      assert.deepEqual((await store.search('tag:', { prefix: true })).map((i) => i.id), ['good', 'other']);
      assert.deepEqual((await store.search('nosep', { prefix: true })).map((i) => i.id), []);
      assert.ok(records.some((r) => String(r.msg).includes('malformed index key')));

      await store.clear('good');
    } finally {
      await store.close();
    }
    assert.deepEqual(await rawKeys(dir, `v${NUL}good`), [], 'clear removes the item document, malformed parts included');
    assert.deepEqual(await rawKeys(dir, `i${NUL}tag:good`), []);
  } finally {
    await cleanup();
  }
});
