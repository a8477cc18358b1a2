/** Opening, locking, reopening, closing, and the write path (empty and concurrent commits). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { ErrNotAStore, ErrStoreLocked } from '@buildcache/errdefs';
import { FORMAT_VERSION, MetadataStore } from '../src/index.js';
import { rawKeys, spawnFixture, tempDir } from './helpers.js';

test('a path that is not a store is refused with ErrNotAStore naming it', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const file = join(dir, 'file');
    await writeFile(file, 'hello');
    const junk = join(dir, 'junk');
    await mkdir(junk);
    await writeFile(join(junk, 'notes.txt'), 'x');
    const foreign = join(dir, 'foreign');
    const other = new Level(foreign);
    await other.put('some', 'data');
    await other.close();
    const future = join(dir, 'future');
    const fut = new Level(future);
    await fut.put('m\u0000format', JSON.stringify({ format: 'buildcache-metadata', version: FORMAT_VERSION + 1 }));
    await fut.close();

    for (const [path, words] of [
      [file, /not a directory|is a file/],
      [junk, /non-empty directory/],
      [foreign, /no format marker/],
      [future, /newer/],
      [join(file, 'below'), /parent of the path is a file/],
    ] as const) {
      await assert.rejects(MetadataStore.open(path), (err: unknown) => {
        assert.ok(err instanceof ErrNotAStore, `${path}: ${String(err)}`);
        assert.ok(err.message.includes(path), err.message);
        assert.match(err.message, words);
        assert.equal(err.details.path, path);
        return true;
      });
    }
    // Nothing was written into the refused paths.
    assert.deepEqual(await readdir(junk), ['notes.txt']);
  } finally {
    await cleanup();
  }
});

test('a missing path or an empty directory becomes a new store; reopening keeps everything', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const empty = join(dir, 'empty');
    await mkdir(empty);
    const s1 = await MetadataStore.open(empty);
    await s1.close();
    const nested = join(dir, 'a', 'b', 'store');
    let store = await MetadataStore.open(nested);
    for (let i = 0; i < 50; i++) {
      const item = await store.get(`rec${i}`);
      item.set('n', i, { index: `n:${i % 5}` });
      item.set('list', [i, `x${i}`]);
      await item.commit();
      await item.setExternal('blob', new Uint8Array([i]));
    }
    await store.close();
    store = await MetadataStore.open(nested);
    const seen: string[] = [];
    for await (const item of store.all()) {
      const i = Number(item.id.slice(3));
      assert.deepEqual([item.get('n'), item.get('list')], [i, [i, `x${i}`]]);
      assert.deepEqual([...((await item.getExternal('blob')) ?? [])], [i]);
      seen.push(item.id);
    }
    assert.equal(seen.length, 50);
    assert.deepEqual(seen, [...seen].sort(), 'all() yields in ID order');
    assert.equal((await store.search('n:3')).length, 10);
    await store.close();
  } finally {
    await cleanup();
  }
});

test('a store open in this process is locked against a second open', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    await assert.rejects(MetadataStore.open(dir), (err: unknown) => {
      assert.ok(err instanceof ErrStoreLocked, String(err));
      assert.ok(err.message.includes(dir));
      return true;
    });
  } finally {
    await store.close();
  }
  const again = await MetadataStore.open(dir);
  await again.close();
  await cleanup();
});

test('a store open in another process is locked, both ways', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const store = await MetadataStore.open(dir);
    const child = spawnFixture('store-process.js', ['try', dir]);
    const line = await child.waitFor((l) => l.startsWith('{'));
    assert.equal((JSON.parse(line) as { code?: string }).code, 'ERR_STORE_LOCKED', line);
    await child.exited;
    await store.close();

    const holder = spawnFixture('store-process.js', ['hold', dir]);
    await holder.waitFor((l) => l === 'ready');
    await assert.rejects(MetadataStore.open(dir), ErrStoreLocked);
    holder.proc.stdin?.end();
    assert.equal((await holder.exited).code, 0);
    const after = await MetadataStore.open(dir);
    await after.close();
  } finally {
    await cleanup();
  }
});

/** Sizes of the LevelDB files in `dir`, by name. */
async function fileSizes(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await readdir(dir)) if (name !== 'LOCK') out[name] = (await stat(join(dir, name))).size;
  return out;
}

test('an empty commit (or one that sets what is stored) writes nothing', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir);
  try {
    const item = await store.get('rec');
    item.set('a', { x: [1, 2] });
    await item.commit();
    const before = store.stats();
    const files = await fileSizes(dir);
    await item.commit();
    await (await store.get('fresh')).commit();
    item.set('a', { x: [1, 2] });
    item.delete('never-set');
    assert.equal(item.dirty, false);
    await item.commit();
    assert.deepEqual(store.stats(), before);
    assert.deepEqual(await fileSizes(dir), files);
    item.set('a', 2);
    await item.commit();
    assert.equal(store.stats().batches, before.batches + 1);
    assert.notDeepEqual(await fileSizes(dir), files);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('concurrent commits to different items all land, merged into fewer batches', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const items = await Promise.all(Array.from({ length: 200 }, (_, i) => store.get(`c${String(i).padStart(3, '0')}`)));
    const rounds = 3;
    for (let r = 1; r <= rounds; r++) {
      await Promise.all(
        items.map((item, i) => {
          for (let k = 0; k < 10; k++) item.set(`k${k}`, r * 1000 + i);
          item.set('round', r, { index: `round:${r}` });
          return item.commit();
        }),
      );
    }
    const stats = store.stats();
    assert.equal(stats.writes, 200 * rounds);
    assert.ok(stats.batches < stats.writes, `group commit merged nothing: ${JSON.stringify(stats)}`);
    await store.close();
    store = await MetadataStore.open(dir);
    let n = 0;
    for await (const item of store.all()) {
      const i = Number(item.id.slice(1));
      for (let k = 0; k < 10; k++) assert.equal(item.get(`k${k}`), rounds * 1000 + i);
      n++;
    }
    assert.equal(n, 200);
    assert.equal((await store.search(`round:${rounds}`)).length, 200);
    assert.equal((await store.search('round:', { prefix: true })).length, 200);
    assert.equal((await store.search('round:1')).length, 0);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('concurrent commits to one item apply in call order', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    const item = await store.get('one');
    const commits: Promise<void>[] = [];
    for (let v = 1; v <= 50; v++) {
      item.set('v', v, { index: `v:${v}` });
      commits.push(item.commit());
    }
    await Promise.all(commits);
    await store.close();
    store = await MetadataStore.open(dir);
    assert.equal((await store.get('one')).get('v'), 50);
    assert.deepEqual((await store.search('v:', { prefix: true })).map((i) => i.indexOf('v')), ['v:50']);
    assert.equal((await store.search('v:49')).length, 0);
    await store.close();
    assert.deepEqual(await rawKeys(dir, 'i\u0000v:'), ['i\u0000v:50\u0000one'], 'no stale index keys on disk');
  } finally {
    await store.close();
    await cleanup();
  }
});

test('ids() lists stored items in ID order without loading them; each loaded item counts once', async () => {
  const { dir, cleanup } = await tempDir();
  let store = await MetadataStore.open(dir);
  try {
    for (const id of ['b', 'a', 'c']) {
      const item = await store.get(id);
      item.set('v', id);
      await item.commit();
    }
    await store.get('empty');
    await store.close();
    store = await MetadataStore.open(dir);
    const ids: string[] = [];
    for await (const id of store.ids()) ids.push(id);
    assert.deepEqual(ids, ['a', 'b', 'c']);
    assert.equal(store.itemsLoaded, 0);
    await store.get('b');
    await store.get('b');
    assert.equal(store.itemsLoaded, 1);
    for await (const _ of store.all()) void _;
    assert.equal(store.itemsLoaded, 3);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('evict drops idle items only; an evicted item is read again; all() does not bring back values older than a write', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir, { sync: false });
  try {
    for (const id of ['a', 'b', 'c']) {
      const item = await store.get(id);
      item.set('v', 1);
      await item.commit();
    }
    assert.equal(store.itemsResident, 3);
    const a = await store.get('a');
    a.set('v', 2);
    assert.equal(store.evict('a'), false, 'queued changes keep an item in memory');
    const writing = a.commit();
    assert.equal(store.evict('a'), false, 'a write in flight keeps an item in memory');
    await writing;
    assert.equal(store.evict('a'), true);
    assert.equal(store.evict('a'), true, 'an item not in memory is out of memory');
    assert.equal(store.itemsResident, 2);
    const loaded = store.itemsLoaded;
    const again = await store.get('a');
    assert.notEqual(again, a);
    assert.equal(again.get('v'), 2);
    assert.equal(store.itemsLoaded, loaded + 1, 'reading an evicted item again counts as a load');

    // A scan whose snapshot predates a write to an item it has not reached yet, evicted meanwhile,
    // yields the written values, not the snapshot's.
    for (const id of ['a', 'b', 'c']) store.evict(id);
    const scan = store.all();
    const first = await scan.next();
    assert.equal(first.value?.id, 'a');
    const c = await store.get('c');
    c.set('v', 3);
    await c.commit();
    const b = await store.get('b');
    await store.clear('b');
    assert.equal(store.evict('c'), true);
    assert.equal(store.evict('b'), true);
    const rest: [string, unknown][] = [];
    for (let r = await scan.next(); !r.done; r = await scan.next()) rest.push([r.value.id, r.value.get('v')]);
    assert.deepEqual(rest, [['c', 3]], 'the cleared item is not yielded, the rewritten one has its new value');
    assert.equal(b.keys().length, 0);
  } finally {
    await store.close();
    await cleanup();
  }
});

test('all() skips items cleared and evicted after its snapshot without reading them again; one written again is read', async () => {
  const { dir, cleanup } = await tempDir();
  const store = await MetadataStore.open(dir, { sync: false });
  const id = (i: number): string => `r${String(i).padStart(4, '0')}`;
  try {
    for (let i = 0; i < 300; i++) {
      const item = await store.get(id(i));
      item.set('v', i);
      await item.commit();
      store.evict(id(i));
    }
    const scan = store.all();
    assert.equal((await scan.next()).value?.id, id(0));
    // A prune deletes records ahead of the scan to the end: cleared, then evicted.
    for (let i = 1; i < 250; i++) {
      await store.clear(id(i));
      assert.equal(store.evict(id(i)), true);
    }
    // One of them is made again (and evicted), one is cleared but still in memory.
    const again = await store.get(id(100));
    again.set('v', 'new');
    await again.commit();
    assert.equal(store.evict(id(100)), true);
    await store.clear(id(260));
    const loaded = store.itemsLoaded;
    const rest: [string, unknown][] = [];
    for (let r = await scan.next(); !r.done; r = await scan.next()) rest.push([r.value.id, r.value.get('v')]);
    assert.deepEqual(rest.slice(0, 2), [[id(100), 'new'], [id(250), 250]]);
    // Yielded and read: the one written again, and r0250…r0299 but r0260 (cleared in memory).
    assert.equal(rest.length, 50, 'the cleared items are not yielded');
    assert.equal(store.itemsLoaded - loaded, 50, 'the 248 items cleared and evicted are not read again');
  } finally {
    await store.close();
    await cleanup();
  }
});
