/** Snapshotter semantics (containerd 1.6): lifecycle, error table, mount shapes, real mounts, usage, walk. */
import assert from 'node:assert/strict';
import { chmod, chown, link, lstat, mkdir, readFile, readdir, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import type { Backend } from '../../src/types.js';
import { availableDrivers, collect, embeddedFactory, rejectsWith, withMount } from './helpers.js';
import type { BackendFactory, Harness } from './helpers.js';

/** Builds committed snapshot `name` on `parent` with files written through its prepare mount. */
async function layer(b: Backend, name: string, parent: string | undefined, files: Record<string, string | null>): Promise<void> {
  const mounts = await b.snapshotter.prepare(`${name}-active`, parent);
  await withMount(b, mounts, async (dir) => {
    for (const [path, content] of Object.entries(files)) {
      if (content === null) await unlink(join(dir, path));
      else await writeFile(join(dir, path), content);
    }
  });
  await b.snapshotter.commit(name, `${name}-active`);
}

/** The snapshotter suite, runnable against any backend factory. */
export function snapshotterSuite(label: string, factory: BackendFactory): void {
  describe(`snapshotter: ${label}`, () => {
    let h: Harness;
    let b: Backend;
    before(async () => {
      h = await factory();
      b = h.backend;
    });
    after(() => h.dispose());

    it('prepare → write → commit → view shows the data, and the view is read-only (EROFS)', async () => {
      await layer(b, 'base', undefined, { 'a.txt': 'A' });
      await layer(b, 'second', 'base', { 'b.txt': 'B' });
      for (const [key, parent] of [['v-one', 'base'], ['v-two', 'second']] as const) {
        const mounts = await b.snapshotter.view(key, parent);
        await withMount(b, mounts, async (dir) => {
          assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'A');
          if (parent === 'second') assert.equal(await readFile(join(dir, 'b.txt'), 'utf8'), 'B');
          await assert.rejects(writeFile(join(dir, 'new.txt'), 'x'), { code: 'EROFS' });
        });
        assert.equal((await b.snapshotter.stat(key)).kind, 'view');
      }
    });

    it('a deletion in an upper layer hides the lower file', async () => {
      await layer(b, 'del-base', undefined, { 'keep.txt': 'k', 'gone.txt': 'g' });
      await layer(b, 'del-top', 'del-base', { 'gone.txt': null });
      await withMount(b, await b.snapshotter.view('del-view', 'del-top'), async (dir) => {
        assert.deepEqual((await readdir(dir)).sort(), ['keep.txt']);
      });
    });

    it('stat reports kind, parent and labels; commit keeps only the labels passed to commit', async () => {
      await b.snapshotter.prepare('lab-a', undefined, { labels: { 'x/prepare': '1' } });
      assert.deepEqual((await b.snapshotter.stat('lab-a')).labels, { 'x/prepare': '1' });
      await b.snapshotter.commit('lab-c', 'lab-a', { labels: { 'x/commit': '2' } });
      const info = await b.snapshotter.stat('lab-c');
      assert.equal(info.kind, 'committed');
      assert.deepEqual(info.labels, { 'x/commit': '2' });
      await rejectsWith(b.snapshotter.stat('lab-a'), ErrNotFound, 'lab-a');
      await b.snapshotter.prepare('lab-child', 'lab-c');
      assert.equal((await b.snapshotter.stat('lab-child')).parent, 'lab-c');
      assert.equal((await b.snapshotter.stat('lab-child')).kind, 'active');
    });

    it('refuses every case of the error table with the right class, naming the key', async () => {
      await b.snapshotter.prepare('e-active', undefined);
      await layer(b, 'e-com', undefined, {});
      await b.snapshotter.view('e-view', 'e-com');
      await b.snapshotter.prepare('e-child', 'e-com');
      const s = b.snapshotter;
      await rejectsWith(s.prepare('e-active', undefined), ErrAlreadyExists, 'e-active');
      await rejectsWith(s.view('e-view', 'e-com'), ErrAlreadyExists, 'e-view');
      await rejectsWith(s.prepare('e-x', 'e-missing'), ErrNotFound, 'e-missing');
      await rejectsWith(s.view('e-x', 'e-missing'), ErrNotFound, 'e-missing');
      await rejectsWith(s.prepare('e-x', 'e-active'), ErrInvalidArgument, 'e-active', 'not committed');
      await rejectsWith(s.prepare('e-x', 'e-view'), ErrInvalidArgument, 'e-view');
      await rejectsWith(s.commit('e-x', 'e-view'), ErrFailedPrecondition, 'e-view', 'not active');
      await rejectsWith(s.commit('e-com', 'e-active'), ErrAlreadyExists, 'e-com');
      await rejectsWith(s.mounts('e-com'), ErrFailedPrecondition, 'e-com');
      await rejectsWith(s.remove('e-com'), ErrFailedPrecondition, 'e-com', 'child');
      await rejectsWith(s.prepare('', undefined), ErrInvalidArgument);
      await rejectsWith(s.update({ name: 'e-com', labels: {} }, ['parent']), ErrInvalidArgument, 'parent', 'e-com');
      await rejectsWith(s.prepare('e-y', undefined, { labels: { 'containerd.io/snapshot.ref': 'e-com' } }), ErrAlreadyExists, 'e-com');
      await rejectsWith(s.stat('e-y'), ErrNotFound);
      const missing = [
        () => s.stat('e-nope'),
        () => s.mounts('e-nope'),
        () => s.remove('e-nope'),
        () => s.usage('e-nope'),
        () => s.commit('e-n2', 'e-nope'),
        () => s.update({ name: 'e-nope', labels: {} }),
      ];
      for (const call of missing) await rejectsWith(call(), ErrNotFound, 'e-nope');
      // every refused call left the store unchanged
      assert.deepEqual(
        (await collect(s.walk(['name~="^e-"']))).map((i) => i.name).sort(),
        ['e-active', 'e-child', 'e-com', 'e-view'],
      );
    });

    it('removes leaves first, then the parent', async () => {
      await layer(b, 'r-p', undefined, { f: '1' });
      await b.snapshotter.prepare('r-c', 'r-p');
      await rejectsWith(b.snapshotter.remove('r-p'), ErrFailedPrecondition);
      await b.snapshotter.remove('r-c');
      await b.snapshotter.remove('r-p');
      await rejectsWith(b.snapshotter.stat('r-p'), ErrNotFound);
    });

    it('update sets, deletes and replaces labels by field path', async () => {
      await b.snapshotter.prepare('u-1', undefined, { labels: { a: '1', b: '2' } });
      let info = await b.snapshotter.update({ name: 'u-1', labels: { a: '9', c: '3' } }, ['labels.a', 'labels.b']);
      assert.deepEqual(info.labels, { a: '9' });
      info = await b.snapshotter.update({ name: 'u-1', labels: { z: '1' } });
      assert.deepEqual(info.labels, { z: '1' });
      assert.deepEqual((await b.snapshotter.stat('u-1')).labels, { z: '1' });
      await rejectsWith(b.snapshotter.update({ name: 'u-1', labels: { 'containerd.io/gc.root': '' } }), ErrInvalidArgument);
    });

    it('walks with containerd filters (AND within one, OR across)', async () => {
      await layer(b, 'w-p', undefined, {});
      await b.snapshotter.prepare('w-c1', 'w-p', { labels: { 'w.io/tag': 'x' } });
      await b.snapshotter.view('w-v', 'w-p');
      const names = async (f: string[]): Promise<string[]> => (await collect(b.snapshotter.walk(f))).map((i) => i.name).sort();
      assert.deepEqual(await names(['parent==w-p']), ['w-c1', 'w-v']);
      assert.deepEqual(await names(['labels."w.io/tag"']), ['w-c1']);
      assert.deepEqual(await names(['parent==w-p,kind==view']), ['w-v']);
      assert.deepEqual(await names(['name==w-p', 'labels."w.io/tag"==x']), ['w-c1', 'w-p']);
      await rejectsWith(collect(b.snapshotter.walk(['name=="unterminated'])), ErrInvalidArgument);
    });

    it('usage counts the snapshot’s own layer only', async () => {
      await layer(b, 'us-p', undefined, { big: 'x'.repeat(1 << 20) });
      const mounts = await b.snapshotter.prepare('us-c', 'us-p');
      const empty = await b.snapshotter.usage('us-c');
      await withMount(b, mounts, async (dir) => {
        await writeFile(join(dir, 'small'), 'y'.repeat(100_000));
        await mkdir(join(dir, 'd'));
        await writeFile(join(dir, 'd', 'f'), 'z');
        await link(join(dir, 'd', 'f'), join(dir, 'd', 'hard'));
      });
      const parent = await b.snapshotter.usage('us-p');
      assert.ok(parent.size >= 1 << 20, `parent size ${parent.size}`);
      assert.equal(parent.inodes, 2);
      const child = await b.snapshotter.usage('us-c');
      if (b.snapshotter.name === 'native') {
        // native copies the parent into the child
        assert.ok(child.size >= (1 << 20) + 100_000);
        assert.equal(child.inodes, 5);
      } else {
        assert.ok(child.size >= 100_000 && child.size < 1 << 20, `child size ${child.size}`);
        assert.equal(child.inodes, empty.inodes + 3);
      }
    });

    it('rejects a concurrent second prepare of one key', async () => {
      const results = await Promise.allSettled([b.snapshotter.prepare('cc-1', undefined), b.snapshotter.prepare('cc-1', undefined)]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const failed = results.find((r) => r.status === 'rejected');
      assert.ok(failed && failed.reason instanceof ErrAlreadyExists);
    });
  });
}

/** Mount shapes and on-disk behaviour specific to the embedded drivers. */
function embeddedShapes(driver: 'overlayfs' | 'native'): void {
  describe(`embedded ${driver}: mount shapes`, () => {
    let h: Harness;
    before(async () => {
      h = await embeddedFactory(driver)();
    });
    after(() => h.dispose());

    it('hands out containerd’s mount shapes', async () => {
      const s = h.backend.snapshotter;
      assert.equal(s.name, driver);
      const base = await s.prepare('m-a', undefined);
      const fsOf = (m: typeof base): string => m[0]!.source;
      await s.commit('m-1', 'm-a');
      const one = await s.prepare('m-b', 'm-1');
      await s.commit('m-2', 'm-b');
      const two = await s.prepare('m-c', 'm-2');
      const v0 = await s.view('m-v0', undefined);
      const v1 = await s.view('m-v1', 'm-1');
      const v2 = await s.view('m-v2', 'm-2');
      assert.deepEqual(await s.mounts('m-c'), two);
      assert.match(fsOf(base), /\/snapshots\/\d+\/fs$/);
      for (const m of [base, one, two, v0, v1, v2]) assert.equal(m.length, 1);
      if (driver === 'native') {
        assert.deepEqual(base[0]!.options, ['rbind', 'rw']);
        assert.deepEqual(one[0]!.options, ['rbind', 'rw']);
        assert.equal(one[0]!.type, 'bind');
        assert.deepEqual(v1, [{ type: 'bind', source: fsOf(base), options: ['rbind', 'ro'] }]);
        assert.deepEqual(v2, [{ type: 'bind', source: fsOf(one), options: ['rbind', 'ro'] }]);
        assert.deepEqual(v0[0]!.options, ['rbind', 'ro']);
        return;
      }
      const { access } = await import('node:fs/promises');
      const hasIndex = await access('/sys/module/overlay/parameters/index').then(() => true, () => false);
      const index = hasIndex ? ['index=off'] : [];
      assert.deepEqual(base, [{ type: 'bind', source: fsOf(base), options: ['rw', 'rbind'] }]);
      const upper1 = fsOf(base).replace(/\/\d+\/fs$/, '');
      assert.ok(upper1.endsWith('/snapshots'));
      const opts1 = one[0]!.options;
      assert.equal(one[0]!.type, 'overlay');
      assert.equal(one[0]!.source, 'overlay');
      assert.deepEqual(opts1.slice(0, index.length), index);
      const up1 = opts1.find((o) => o.startsWith('upperdir='))!.slice(9);
      assert.deepEqual(opts1.slice(index.length), [`workdir=${up1.replace(/fs$/, 'work')}`, `upperdir=${up1}`, `lowerdir=${fsOf(base)}`]);
      const opts2 = two[0]!.options;
      assert.equal(opts2.at(-1), `lowerdir=${up1}:${fsOf(base)}`);
      assert.deepEqual(v0[0]!.options, ['ro', 'rbind']);
      assert.deepEqual(v1, [{ type: 'bind', source: fsOf(base), options: ['ro', 'rbind'] }]);
      assert.deepEqual(v2, [{ type: 'overlay', source: 'overlay', options: [...index, `lowerdir=${up1}:${fsOf(base)}`] }]);
    });

    if (driver === 'native') {
      it('native prepare copies the parent fully: owners, modes, mtimes, links', async () => {
        const b = h.backend;
        const m = await b.snapshotter.prepare('cp-a', undefined);
        const dir = m[0]!.source;
        await writeFile(join(dir, 'f'), 'data');
        await chown(join(dir, 'f'), 1234, 5678);
        await chmod(join(dir, 'f'), 0o4751);
        await utimes(join(dir, 'f'), 1_000_000, 1_000_000);
        await link(join(dir, 'f'), join(dir, 'hard'));
        await symlink('f', join(dir, 'sym'));
        await b.snapshotter.commit('cp-c', 'cp-a');
        const copy = (await b.snapshotter.prepare('cp-b', 'cp-c'))[0]!.source;
        assert.notEqual(copy, dir);
        const st = await stat(join(copy, 'f'));
        assert.equal(st.mode & 0o7777, 0o4751);
        assert.equal(st.uid, 1234);
        assert.equal(st.gid, 5678);
        assert.equal(Math.round(st.mtimeMs / 1000), 1_000_000);
        assert.equal((await stat(join(copy, 'hard'))).ino, st.ino);
        assert.ok((await lstat(join(copy, 'sym'))).isSymbolicLink());
        await writeFile(join(copy, 'f'), 'changed');
        assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'data');
      });
    }
  });
}

const drivers = await availableDrivers();
for (const driver of drivers) {
  snapshotterSuite(`embedded ${driver}`, embeddedFactory(driver));
  embeddedShapes(driver);
}
