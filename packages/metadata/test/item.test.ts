/** StorageItem values: JSON round trips, read-your-writes, queued commits, validation, externals. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrClosed, ErrInvalidArgument } from '@buildcache/errdefs';
import { MetadataStore } from '../src/index.js';
import { tempDir } from './helpers.js';

const VALUES: Record<string, unknown> = {
  null: null,
  true: true,
  false: false,
  zero: 0,
  negative: -42,
  float: 3.25,
  big: Number.MAX_SAFE_INTEGER,
  empty: '',
  text: 'héllo \u{1F600} "quoted" \\ \n',
  emptyArray: [],
  array: [1, 'two', null, false, [3], { four: 4 }],
  emptyObject: {},
  object: { z: 1, a: { nested: ['x', { deep: true }] }, 'key with spaces': null },
};

test('every JSON value type round-trips through commit and reopen', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    let store = await MetadataStore.open(dir);
    const item = await store.get('rec1');
    for (const [key, value] of Object.entries(VALUES)) item.set(key, value);
    for (const [key, value] of Object.entries(VALUES)) assert.deepEqual(item.get(key), value, `before commit: ${key}`);
    await item.commit();
    await store.close();

    store = await MetadataStore.open(dir);
    const again = await store.get('rec1');
    assert.deepEqual(again.keys(), Object.keys(VALUES).sort());
    for (const [key, value] of Object.entries(VALUES)) assert.deepEqual(again.get(key), value, `after reopen: ${key}`);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('values read back are copies, frozen, and unaffected by later changes to the argument', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec');
    const arg = { list: [1, 2] };
    item.set('obj', arg);
    arg.list.push(3);
    const read = item.get<{ list: number[] }>('obj');
    assert.deepEqual(read, { list: [1, 2] });
    assert.ok(Object.isFrozen(read) && Object.isFrozen(read?.list));
    assert.throws(() => read?.list.push(4), TypeError);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('reads see queued changes; discard and delete behave; get returns the same object', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec');
    assert.equal(await store.get('rec'), item);
    assert.deepEqual(item.keys(), []);
    item.set('a', 1);
    item.set('b', 2);
    await item.commit();
    assert.equal(item.dirty, false);
    item.set('a', 10);
    item.delete('b');
    item.set('c', 3);
    assert.equal(item.dirty, true);
    assert.deepEqual([item.get('a'), item.get('b'), item.get('c')], [10, undefined, 3]);
    assert.deepEqual(item.keys(), ['a', 'c']);
    item.discard();
    assert.deepEqual([item.get('a'), item.get('b'), item.get('c')], [1, 2, undefined]);
    item.delete('b');
    item.delete('missing');
    await item.commit();
    await store.close();
    store = await MetadataStore.open(dir);
    const again = await store.get('rec');
    assert.deepEqual(again.keys(), ['a']);
    assert.equal(again.has('b'), false);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('changes made while a commit is in flight are kept for the next commit', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec');
    item.set('a', 1);
    const first = item.commit();
    assert.equal(item.get('a'), 1, 'in-flight value is visible');
    item.set('b', 2);
    assert.equal(item.dirty, true);
    await first;
    assert.equal(item.dirty, true);
    await item.commit();
    await store.close();
    store = await MetadataStore.open(dir);
    const again = await store.get('rec');
    assert.deepEqual([again.get('a'), again.get('b')], [1, 2]);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('invalid IDs, keys, index strings and values are rejected with ErrInvalidArgument', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    for (const id of ['', 'a\u0000b', '\uD800x', 'x'.repeat(5000)]) {
      await assert.rejects(store.get(id), ErrInvalidArgument, JSON.stringify(id.slice(0, 10)));
    }
    const item = await store.get('rec');
    assert.throws(() => item.set('', 1), ErrInvalidArgument);
    assert.throws(() => item.set('k\u0000', 1), ErrInvalidArgument);
    assert.throws(() => item.set('k', 1, { index: 'chain\u0000id' }), ErrInvalidArgument);
    assert.throws(() => item.set('k', 1, { index: '' }), ErrInvalidArgument);
    assert.throws(() => item.set('k', undefined), ErrInvalidArgument);
    assert.throws(() => item.set('k', Number.NaN), ErrInvalidArgument);
    assert.throws(() => item.set('k', 10n), ErrInvalidArgument);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => item.set('k', cyclic), ErrInvalidArgument);
    await assert.rejects(store.search('a\u0000'), ErrInvalidArgument);
    assert.equal(item.dirty, false, 'rejected sets queue nothing');
  } finally {
    await store.close();
    await cleanup();
  }
});

test('external values are stored raw, survive reopen, and are not JSON values', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec');
    const blob = new Uint8Array(1 << 20);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) & 0xff;
    await item.setExternal('contenthash', blob);
    await item.setExternal('small', new Uint8Array([0, 1, 255]));
    assert.deepEqual(item.keys(), [], 'externals are not values');
    assert.equal(await item.getExternal('missing'), undefined);
    await store.close();
    store = await MetadataStore.open(dir);
    const again = await store.get('rec');
    assert.deepEqual(Buffer.from((await again.getExternal('contenthash'))!), Buffer.from(blob));
    assert.deepEqual([...((await again.getExternal('small')) ?? [])], [0, 1, 255]);
    await again.deleteExternal('small');
    assert.equal(await again.getExternal('small'), undefined);
    await assert.rejects(again.setExternal('x', 'text' as unknown as Uint8Array), ErrInvalidArgument);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('a closed store and its items throw ErrClosed', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  const item = await store.get('rec');
  item.set('a', 1);
  const pending = item.commit();
  await store.close();
  await pending;
  try {
    assert.equal(store.closed, true);
    await assert.rejects(store.get('rec'), ErrClosed);
    await assert.rejects(store.search('x'), ErrClosed);
    await assert.rejects(store.clear('rec'), ErrClosed);
    await assert.rejects(store.all().next(), ErrClosed);
    assert.throws(() => item.set('a', 2), ErrClosed);
    await assert.rejects(item.commit(), ErrClosed);
    await assert.rejects(item.getExternal('a'), ErrClosed);
    assert.equal(item.get('a'), 1, 'in-memory reads still work');
    await store.close();
  } finally {
    await cleanup();
  }
});
