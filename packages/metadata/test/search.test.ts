/** Secondary indexes: add, move, remove, exact versus prefix search, clear. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetadataStore, type StorageItem } from '../src/index.js';
import { tempDir } from './helpers.js';

const ids = (items: StorageItem[]): string[] => items.map((i) => i.id);

test('index keys are added, moved and removed with their values, across reopen', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec1');
    item.set('cache.chainID', 'sha256:aaa', { index: 'chainid:sha256:aaa' });
    assert.deepEqual(ids(await store.search('chainid:sha256:aaa')), [], 'uncommitted index is not searchable');
    await item.commit();
    assert.deepEqual(ids(await store.search('chainid:sha256:aaa')), ['rec1']);
    assert.equal(item.indexOf('cache.chainID'), 'chainid:sha256:aaa');

    item.set('cache.chainID', 'sha256:bbb', { index: 'chainid:sha256:bbb' });
    await item.commit();
    assert.deepEqual(ids(await store.search('chainid:sha256:aaa')), []);
    assert.deepEqual(ids(await store.search('chainid:sha256:bbb')), ['rec1']);

    await store.close();
    store = await MetadataStore.open(dir);
    assert.deepEqual(ids(await store.search('chainid:sha256:aaa')), []);
    const found = await store.search('chainid:sha256:bbb');
    assert.deepEqual(ids(found), ['rec1']);
    assert.equal(found[0]?.get('cache.chainID'), 'sha256:bbb');

    const again = await store.get('rec1');
    assert.equal(found[0], again, 'search returns the same object as get');
    again.set('cache.chainID', 'sha256:bbb');
    await again.commit();
    assert.deepEqual(ids(await store.search('chainid:sha256:bbb')), [], 'setting without index drops the index');

    again.set('cache.chainID', 'sha256:ccc', { index: 'chainid:sha256:ccc' });
    await again.commit();
    again.delete('cache.chainID');
    await again.commit();
    assert.deepEqual(ids(await store.search('chainid:', { prefix: true })), [], 'deleting the value removes its index');
  } finally {
    await store.close();
    await cleanup();
  }
});

test('exact search matches only the whole index string; prefix search matches its extensions', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    const indexes: Record<string, string> = { r1: 'a:b', r2: 'a:bc', r3: 'a:b:c', r4: 'a:a', r5: 'a', r6: 'b:b' };
    for (const [id, index] of Object.entries(indexes)) {
      const item = await store.get(id);
      item.set('k', id, { index });
      await item.commit();
    }
    assert.deepEqual(ids(await store.search('a:b')), ['r1']);
    assert.deepEqual(ids(await store.search('a')), ['r5']);
    assert.deepEqual(ids(await store.search('a:')), []);
    assert.deepEqual(ids(await store.search('a:b', { prefix: true })).sort(), ['r1', 'r2', 'r3']);
    assert.deepEqual(ids(await store.search('a:', { prefix: true })).sort(), ['r1', 'r2', 'r3', 'r4']);
    assert.deepEqual(ids(await store.search('a', { prefix: true })).sort(), ['r1', 'r2', 'r3', 'r4', 'r5']);
    assert.deepEqual(ids(await store.search('z', { prefix: true })), []);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('several items share an index; an item with several matching keys is returned once', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    for (const id of ['x1', 'x2', 'x3']) {
      const item = await store.get(id);
      item.set('cache.blobChainID', 'sha256:same', { index: 'blobchainid:sha256:same' });
      item.set('other', 1, { index: 'blobchainid:sha256:same' });
      item.set('third', 2, { index: 'blobchainid:sha256:samf' });
      await item.commit();
    }
    assert.deepEqual(ids(await store.search('blobchainid:sha256:same')), ['x1', 'x2', 'x3']);
    assert.deepEqual(ids(await store.search('blobchainid:', { prefix: true })).sort(), ['x1', 'x2', 'x3']);

    // Two keys carry the same index: removing one keeps the item findable.
    const x2 = await store.get('x2');
    x2.delete('other');
    await x2.commit();
    assert.deepEqual(ids(await store.search('blobchainid:sha256:same')), ['x1', 'x2', 'x3']);
    x2.delete('cache.blobChainID');
    await x2.commit();
    assert.deepEqual(ids(await store.search('blobchainid:sha256:same')), ['x1', 'x3']);
    assert.deepEqual(ids(await store.search('blobchainid:sha256:samf')), ['x1', 'x2', 'x3']);
  } finally {
    await store.close();
    await cleanup();
  }
});

/** A byte derived from a key, so that each external value differs. */
function i8(key: string): number {
  return key.charCodeAt(key.length - 1);
}

test('clear removes values, index keys and externals (however many); the item object stays usable', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('gone');
    item.set('cache.chainID', 'sha256:1', { index: 'chainid:sha256:1' });
    item.set('size', 10);
    await item.commit();
    await item.setExternal('filelist', new Uint8Array([1, 2, 3]));
    // More external keys than LevelDB clears in one internal step (16 KiB of keys).
    const many = Array.from({ length: 1500 }, (_, i) => `checksum-${String(i).padStart(6, '0')}`);
    for (const key of many) await item.setExternal(key, new Uint8Array([i8(key)]));
    const keep = await store.get('kept');
    keep.set('cache.chainID', 'sha256:1', { index: 'chainid:sha256:1' });
    await keep.commit();
    await keep.setExternal('filelist', new Uint8Array([9]));

    item.set('queued', true);
    await store.clear('gone');
    assert.deepEqual(item.keys(), []);
    assert.equal(item.dirty, false, 'queued changes are dropped by clear');
    assert.deepEqual(ids(await store.search('chainid:sha256:1')), ['kept']);
    assert.equal(await item.getExternal('filelist'), undefined);
    const listed: string[] = [];
    for await (const it of store.all()) listed.push(it.id);
    assert.deepEqual(listed, ['kept']);

    item.set('reborn', 1, { index: 'chainid:sha256:1' });
    await item.commit();
    await store.close();
    store = await MetadataStore.open(dir);
    const back = await store.get('gone');
    assert.deepEqual(back.keys(), ['reborn']);
    for (const key of ['filelist', many[0]!, many[777]!, many.at(-1)!]) assert.equal(await back.getExternal(key), undefined, key);
    assert.deepEqual(ids(await store.search('chainid:sha256:1')), ['gone', 'kept']);
    assert.deepEqual([...((await (await store.get('kept')).getExternal('filelist')) ?? [])], [9]);
    await store.clear('never-existed');
  } finally {
    await store.close();
    await cleanup();
  }
});

test('a prefix search finds exactly the index strings that start with it, whatever characters follow or end the prefix, reading no key past them', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    const indexes: Record<string, string> = {
      a: 'p:x', // plain
      b: 'p:\u{1F600}', // a character outside the BMP after the prefix
      c: 'p:\uffff', // the last BMP character after the prefix
      d: 'p;', // the next string after the prefix's last character: not under 'p:'
      e: 'q\ud7ff', // a prefix ending just below the surrogates
      f: 'q\ud7ffz',
      g: 'q\ue000', // a prefix ending above them
      h: 'q\ue000\u{10348}',
      i: 'q\ue001',
    };
    for (const [id, index] of Object.entries(indexes)) {
      const item = await store.get(id);
      item.set('k', index, { index });
      await item.commit();
    }
    // Each search reads only the index keys under its prefix: none past them (further index keys, values).
    const read = async (prefix: string): Promise<[string[], number]> => {
      const before = store.indexKeysRead;
      const found = ids(await store.search(prefix, { prefix: true })).sort();
      return [found, store.indexKeysRead - before];
    };
    assert.deepEqual(await read('p:'), [['a', 'b', 'c'], 3]);
    assert.deepEqual(await read('p'), [['a', 'b', 'c', 'd'], 4]);
    assert.deepEqual(ids(await store.search('q\ud7ff', { prefix: true })).sort(), ['e', 'f']);
    assert.deepEqual(ids(await store.search('q\ue000', { prefix: true })).sort(), ['g', 'h']);
  } finally {
    await store.close();
    await cleanup();
  }
});
