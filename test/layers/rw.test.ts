/**
 * Read-write layers on every backend: the `-init` layer, counted mounts, `docker diff`-style changes
 * and the layer tar of a container's changes; the layer store's records held against the cache's
 * prune; layers registered from a build record (exported through the differ).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound, ErrReleased } from '@buildcache/errdefs';
import { INIT_LAYER_ENTRIES, LayerStore, setupInitLayer } from '@buildcache/layers';
import { BACKENDS, type TestBackend } from '../support/backends.js';
import { collect, sha } from './fixtures.js';

const run = promisify(execFile);

/** A tar (GNU tar) of the files `files` (path → body; a body starting with `->` is a symlink). */
async function tarOf(dir: string, name: string, files: Record<string, string>): Promise<Buffer> {
  const src = join(dir, `src-${name}`);
  await rm(src, { recursive: true, force: true });
  for (const [p, body] of Object.entries(files)) {
    await mkdir(join(src, p, '..'), { recursive: true });
    if (body.startsWith('->')) await symlink(body.slice(2), join(src, p));
    else await writeFile(join(src, p), body);
  }
  const out = join(dir, `${name}.tar`);
  await run('tar', ['-C', src, '--sort=name', '-cf', out, '.']);
  return readFile(out);
}

for (const kind of BACKENDS) {
  describe(`read-write layers on ${kind.name}`, () => {
    let tb: TestBackend;
    let cache: CacheManager;
    let store: LayerStore;
    const open = async (): Promise<void> => {
      cache = await CacheManager.open({ root: join(tb.dir, 'cache'), backend: tb.backend, logger: pino({ level: 'silent' }) });
      store = await LayerStore.open({ cache, root: join(tb.dir, 'layers') });
    };
    before(async () => {
      tb = await kind.open();
      await open();
    });
    after(async () => {
      await store.close();
      await cache.close();
      await tb.close();
    });
    const usage = async (): Promise<Map<string, boolean>> => {
      const m = new Map<string, boolean>();
      for await (const u of cache.diskUsage()) m.set(u.id, u.inUse);
      return m;
    };

    test('createRWLayer: init layer files under the container layer, counted mounts, changes without the init files, the diff registers as a child', async () => {
      // the image has /etc/hosts as a file and /etc/mtab as a symlink out of the tree: the init layer replaces both
      const base = await store.register([await tarOf(tb.dir, 'img', { 'etc/hosts': 'image hosts', 'etc/mtab': '->/etc/passwd', 'keep.txt': 'k', 'gone.txt': 'g', 'dir/f': 'f' })]);
      const rw = await store.createRWLayer('c1', base.chainID, { init: setupInitLayer });
      await assert.rejects(store.createRWLayer('c1', base.chainID), ErrAlreadyExists);
      await assert.rejects(store.createRWLayer('../evil', base.chainID), ErrInvalidArgument);
      const root = await rw.mount();
      assert.equal(await rw.mount(), root, 'a second mount shares the first');
      for (const [path, what] of INIT_LAYER_ENTRIES) {
        const st = await lstat(join(root, path));
        if (what === 'dir') assert.ok(st.isDirectory(), `${path} is a directory`);
        else if (what === 'file') assert.ok(st.isFile() && st.size === 0, `${path} is an empty file`);
        else assert.equal(await readlink(join(root, path)), what.symlink, `${path} is a symlink`);
      }
      assert.equal(await readFile(join(root, 'keep.txt'), 'utf8'), 'k', 'the parent layer is under it');
      await writeFile(join(root, 'new.txt'), 'new');
      await writeFile(join(root, 'dir', 'f'), 'changed');
      await rm(join(root, 'gone.txt'));
      await writeFile(join(root, 'etc', 'hostname'), 'c1');
      await rw.unmount();
      await assert.rejects(store.releaseRWLayer(rw), ErrFailedPrecondition, 'still mounted through this handle');
      await rw.unmount();
      await assert.rejects(rw.unmount(), ErrFailedPrecondition);
      const changes = await rw.changes();
      assert.deepEqual(changes, [
        { path: '/dir', kind: 'C' }, { path: '/dir/f', kind: 'C' },
        { path: '/etc', kind: 'C' }, { path: '/etc/hostname', kind: 'C' },
        { path: '/gone.txt', kind: 'D' }, { path: '/new.txt', kind: 'A' },
      ], 'the init files are not changes of the container; what the container did is');
      // the container's diff, registered over the parent (what `docker commit` does), holds exactly those changes
      const diff = await collect(rw.tarStream());
      const committed = await store.register([diff], base.chainID);
      assert.equal(committed.diffID, sha(diff));
      assert.ok((await collect(committed.tarStream())).equals(diff));
      // a second handle survives the release of the first; reopen finds the layer and its files
      const again = store.getRWLayer('c1');
      assert.deepEqual(await store.release(base), [], 'the read-write layer and the commit hold the base');
      assert.deepEqual(await store.releaseRWLayer(rw), []);
      await assert.rejects(rw.mount(), ErrReleased);
      await store.close();
      await cache.close();
      await open();
      const reopened = store.getRWLayer('c1');
      assert.equal(await readFile(join(await reopened.mount(), 'new.txt'), 'utf8'), 'new');
      await reopened.unmount();
      assert.deepEqual(store.listRWLayers().map((m) => m.name), ['c1']);
      assert.deepEqual(await store.releaseRWLayer(reopened), []);
      assert.equal(store.listRWLayers().length, 0, "the last handle of this process removes it (the old process's handle died with it)");
      assert.throws(() => store.getRWLayer('c1'), ErrNotFound);
      const removed = await store.release(await store.get(committed.chainID).then(async (l) => { await store.release(committed); return l; }));
      assert.deepEqual(removed.map((r) => r.chainID), [committed.chainID, base.chainID], 'the commit, then the base (no more children)');
      assert.equal((await usage()).size, 0, 'no record left');
      void again;
    });

    test("the store's records are held: du shows them in use, prune --all keeps them; released, they go", async () => {
      const layer = await store.register([await tarOf(tb.dir, 'held', { a: 'a' })]);
      const rw = await store.createRWLayer('held', layer.chainID, { init: setupInitLayer });
      const ids = [store.list()[0]!.recordId, store.listRWLayers()[0]!.mountID, store.listRWLayers()[0]!.initID!];
      const before = await usage();
      for (const id of ids) assert.equal(before.get(id), true, `record ${id} is in use in du`);
      assert.equal((await cache.prune([{ all: true }])).deleted, 0, 'prune --all deletes none of them');
      assert.deepEqual([...(await usage()).keys()].sort(), [...ids].sort());
      await store.releaseRWLayer(rw);
      assert.deepEqual((await usage()).size, 1, 'the read-write layer took its two records');
      await store.release(layer);
      assert.equal((await usage()).size, 0);
    });

    test('registerRecord: a build record becomes a layer without tar-split data; tarStream comes from the differ and hashes to its diffID', async () => {
      const base = await store.register([await tarOf(tb.dir, 'rbase', { 'x.txt': 'x', 'sub/y': 'y' })]);
      const baseRef = await cache.get(store.list()[0]!.recordId);
      const m = await cache.new(baseRef, { description: 'RUN something' });
      const mnt = await m.mount();
      await writeFile(join(mnt.target, 'built.bin'), 'built');
      await rm(join(mnt.target, 'sub', 'y'));
      await mnt.unmount();
      const built = await m.commit();
      await assert.rejects(store.registerRecord(built), ErrInvalidArgument, 'its cache parent is the base layer, not nothing');
      const layer = await store.registerRecord(built, base.chainID);
      const tar = await collect(layer.tarStream());
      assert.equal(sha(tar), layer.diffID);
      assert.equal(layer.chainID, sha(Buffer.from(`${base.chainID} ${layer.diffID}`)));
      assert.equal(store.list().find((l) => l.chainID === layer.chainID)!.tarSplit, false);
      await writeFile(join(tb.dir, 'record-layer.tar'), tar);
      const { stdout: listing } = await run('tar', ['-tf', join(tb.dir, 'record-layer.tar')]);
      assert.match(listing, /built\.bin/);
      assert.match(listing, /\.wh\.y/);
      assert.equal((await cache.prune([{ all: true }])).deleted, 0, 'held while the layer exists');
      await built.release();
      await baseRef.release();
      assert.equal((await store.release(layer)).length, 1);
      assert.equal((await store.release(base)).length, 1);
      await cache.prune([{ all: true }]);
      assert.equal((await usage()).size, 0, 'let go of, the build record is the cache\'s to prune');
    });
  });
}
