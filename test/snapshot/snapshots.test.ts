/**
 * Snapshot semantics of containerd-api.md §5, run unchanged against every backend: kinds, the error
 * table (matched by class), commit labels, update with/without field paths, walk filters.
 * Differences between backends live only in KNOWN_DIFFERENCES (helpers.ts).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { nowNs, nsToMs } from '@buildcache/snapshot';
import { KNOWN_DIFFERENCES, backendKinds, committed, expectedClass, isGone, openFixture, rejectsWith, walkNames } from './helpers.js';
import type { Fixture } from './helpers.js';

for (const kind of backendKinds()) {
  describe(`snapshots [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    it('prepare, view and commit give the right kinds, parents and mounts', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      const mounts = await committed(f.backend, base, undefined, f.leased);
      assert.ok(mounts.length > 0);
      const info = await s.stat(base);
      assert.equal(info.kind, 'committed');
      assert.equal(info.parent, undefined);
      await rejectsWith(s.stat(`${base}-active`), ErrNotFound, 'the active key disappears on commit');

      const child = f.name('child');
      await s.prepare(child, base, f.leased);
      const ci = await s.stat(child);
      assert.equal(ci.kind, 'active');
      assert.equal(ci.parent, base);
      assert.ok((await s.mounts(child)).length > 0);

      const view = f.name('view');
      await s.view(view, base, f.leased);
      assert.equal((await s.stat(view)).kind, 'view');
      assert.ok((await s.mounts(view)).length > 0);

      const emptyView = f.name('empty-view');
      await s.view(emptyView, undefined, f.leased);
      assert.equal((await s.stat(emptyView)).parent, undefined);
    });

    it('times carry nanoseconds: created and updated lie between the caller\'s clock before and after the call', async () => {
      const s = f.backend.snapshotter;
      const key = f.name('times');
      const within = (ns: bigint, before: bigint, after: bigint, what: string): void =>
        assert.ok(before <= ns && ns <= after, `${what} ${ns} lies in [${before}, ${after}]`);
      const b0 = nowNs();
      await s.prepare(key, undefined, f.leased);
      const a0 = nowNs();
      const created = await s.stat(key);
      within(created.createdAtNs, b0, a0, 'createdAtNs');
      within(created.updatedAtNs, b0, a0, 'updatedAtNs');
      assert.equal(created.createdAt.getTime(), nsToMs(created.createdAtNs), 'the Date is the same time in whole ms');
      const b1 = nowNs();
      const updated = await s.update({ name: key, labels: { touched: 'yes' } });
      const a1 = nowNs();
      within(updated.updatedAtNs, b1, a1, 'updatedAtNs after update');
      assert.equal(updated.createdAtNs, created.createdAtNs, 'update keeps the creation time');
      assert.equal((await s.stat(key)).updatedAtNs, updated.updatedAtNs, 'stat gives the stored time');
      assert.ok(
        [created.createdAtNs, updated.updatedAtNs].some((ns) => ns % 1_000_000n !== 0n),
        'not whole milliseconds',
      );
    });

    it('a prepared snapshot is writable through its mounts and usage counts it', async () => {
      const s = f.backend.snapshotter;
      const key = f.name('rw');
      const m = await f.mount(await s.prepare(key, undefined, f.leased));
      await writeFile(join(m.target, 'f'), Buffer.alloc(64 * 1024, 7));
      await m.unmount();
      const u = await s.usage(key);
      assert.ok(u.size >= 64 * 1024, `usage ${u.size} counts the written file`);
      assert.ok(u.inodes >= 2, `usage ${u.inodes} inodes counts the dir and the file`);
    });

    it('prepare or view of an existing key is ErrAlreadyExists', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      await committed(f.backend, base, undefined, f.leased);
      const key = f.name('k');
      await s.prepare(key, base, f.leased);
      await rejectsWith(s.prepare(key, base, f.leased), ErrAlreadyExists, 'prepare over active');
      await rejectsWith(s.view(key, base, f.leased), ErrAlreadyExists, 'view over active');
      await rejectsWith(s.prepare(base, undefined, f.leased), ErrAlreadyExists, 'prepare over committed');
      const v = f.name('v');
      await s.view(v, base, f.leased);
      await rejectsWith(s.prepare(v, base, f.leased), ErrAlreadyExists, 'prepare over view');
    });

    it('a missing parent is ErrNotFound, a non-committed one ErrInvalidArgument', async () => {
      const s = f.backend.snapshotter;
      await rejectsWith(s.prepare(f.name('k'), f.name('nonexist'), f.leased), ErrNotFound, 'prepare');
      await rejectsWith(s.view(f.name('k'), f.name('nonexist'), f.leased), ErrNotFound, 'view');
      const active = f.name('active');
      await s.prepare(active, undefined, f.leased);
      await rejectsWith(s.prepare(f.name('k'), active, f.leased), ErrInvalidArgument, 'active parent');
      const view = f.name('view');
      await s.view(view, undefined, f.leased);
      await rejectsWith(s.prepare(f.name('k'), view, f.leased), ErrInvalidArgument, 'view parent');
      assert.deepEqual(await walkNames(f.backend), [active, view].sort(), 'failed prepares created nothing');
    });

    it('commit of a view, mounts of a committed snapshot and remove of a parent are ErrFailedPrecondition', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      await committed(f.backend, base, undefined, f.leased);
      const view = f.name('view');
      await s.view(view, base, f.leased);
      const commitView = expectedClass(KNOWN_DIFFERENCES.commitView, kind.name);
      await rejectsWith(s.commit(f.name('c'), view, f.leased), commitView, 'commit a view (known difference on containerd-native)');
      await rejectsWith(s.mounts(base), ErrFailedPrecondition, 'mounts of committed');
      await rejectsWith(s.remove(base), ErrFailedPrecondition, 'remove with a child');
      assert.equal((await s.stat(base)).kind, 'committed', 'parent still there');
      await s.remove(view);
      await s.remove(base);
      assert.ok(await isGone(s.stat(base)));
    });

    it('commit to an existing name is ErrAlreadyExists and keeps the active snapshot', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      await committed(f.backend, base, undefined, f.leased);
      const key = f.name('k');
      await s.prepare(key, undefined, f.leased);
      await rejectsWith(s.commit(base, key, f.leased), ErrAlreadyExists);
      assert.equal((await s.stat(key)).kind, 'active');
    });

    it('calls on a missing key are ErrNotFound', async () => {
      const s = f.backend.snapshotter;
      const missing = f.name('nonexist');
      await rejectsWith(s.stat(missing), ErrNotFound, 'stat');
      await rejectsWith(s.usage(missing), ErrNotFound, 'usage');
      await rejectsWith(s.remove(missing), ErrNotFound, 'remove');
      await rejectsWith(s.mounts(missing), ErrNotFound, 'mounts');
      await rejectsWith(s.commit(f.name('c'), missing, f.leased), ErrNotFound, 'commit');
      await rejectsWith(s.update({ name: missing, labels: { a: 'b' } }), ErrNotFound, 'update');
    });

    it('an empty key is ErrInvalidArgument', async () => {
      await rejectsWith(f.backend.snapshotter.prepare('', undefined, f.leased), ErrInvalidArgument, 'prepare');
      await rejectsWith(f.backend.snapshotter.view('', undefined, f.leased), ErrInvalidArgument, 'view');
      await rejectsWith(f.backend.snapshotter.stat(''), ErrInvalidArgument, 'stat');
    });

    it('containerd.io/snapshot.ref naming an existing snapshot fails prepare with ErrAlreadyExists and creates nothing', async () => {
      const s = f.backend.snapshotter;
      const target = f.name('target');
      await committed(f.backend, target, undefined, f.leased);
      const key = f.name('extract');
      await rejectsWith(
        s.prepare(key, undefined, { ...f.leased, labels: { 'containerd.io/snapshot.ref': target } }),
        ErrAlreadyExists,
      );
      assert.ok(await isGone(s.stat(key)), 'no snapshot was created');
      const other = f.name('other');
      await s.prepare(key, undefined, { ...f.leased, labels: { 'containerd.io/snapshot.ref': other } });
      assert.equal((await s.stat(key)).kind, 'active', 'a ref to a missing target prepares normally');
    });

    it('commit keeps only the labels passed to commit', async () => {
      const s = f.backend.snapshotter;
      const a = f.name('a');
      await s.prepare(`${a}-active`, undefined, { ...f.leased, labels: { 'x/prepared': '1', 'x/both': 'p' } });
      assert.deepEqual((await s.stat(`${a}-active`)).labels, { 'x/prepared': '1', 'x/both': 'p' });
      await s.commit(a, `${a}-active`, { ...f.leased, labels: { 'x/committed': '2', 'x/both': 'c' } });
      assert.deepEqual((await s.stat(a)).labels, { 'x/committed': '2', 'x/both': 'c' });
      const b = f.name('b');
      await s.prepare(`${b}-active`, undefined, { ...f.leased, labels: { 'x/prepared': '1' } });
      await s.commit(b, `${b}-active`, f.leased);
      assert.deepEqual((await s.stat(b)).labels, {});
    });

    it('update with field paths changes only those labels, without replaces all', async () => {
      const s = f.backend.snapshotter;
      const a = f.name('a');
      await committed(f.backend, a, undefined, { ...f.leased, labels: { 'x/a': '1', 'x/b': '2', 'x/c': '3' } });
      let info = await s.update({ name: a, labels: { 'x/a': 'one', 'x/b': 'ignored', 'x/new': 'n' } }, ['labels.x/a', 'labels.x/new']);
      assert.deepEqual(info.labels, { 'x/a': 'one', 'x/b': '2', 'x/c': '3', 'x/new': 'n' });
      info = await s.update({ name: a, labels: {} }, ['labels.x/c']);
      assert.deepEqual(info.labels, { 'x/a': 'one', 'x/b': '2', 'x/new': 'n' }, 'a field path absent from labels deletes the label');
      assert.deepEqual((await s.stat(a)).labels, info.labels);
      info = await s.update({ name: a, labels: { 'x/only': 'o' } });
      assert.deepEqual(info.labels, { 'x/only': 'o' }, 'no field paths replaces every label');
      info = await s.update({ name: a, labels: { 'x/z': 'z' } }, ['labels']);
      assert.deepEqual(info.labels, { 'x/z': 'z' }, 'field path `labels` replaces every label');
      assert.equal(info.kind, 'committed');
    });

    it('update of an immutable field is ErrInvalidArgument', async () => {
      const s = f.backend.snapshotter;
      const a = f.name('a');
      await committed(f.backend, a, undefined, f.leased);
      for (const field of ['parent', 'name', 'kind']) {
        await rejectsWith(s.update({ name: a, labels: {} }, [field]), ErrInvalidArgument, field);
      }
    });

    it('walk filters: parent==, name~=, labels."k", OR of several', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      await committed(f.backend, base, undefined, f.leased);
      const c1 = f.name('kid');
      const c2 = f.name('kid');
      await s.prepare(c1, base, { ...f.leased, labels: { 'x/role': 'one' } });
      await s.view(c2, base, { ...f.leased, labels: { 'x/role': 'two', 'containerd.io/gc.root': 'yes' } });
      const other = f.name('zzz');
      await s.prepare(other, undefined, f.leased);

      assert.deepEqual(await walkNames(f.backend), [base, c1, c2, other].sort());
      assert.deepEqual(await walkNames(f.backend, [`parent==${base}`]), [c1, c2].sort());
      assert.deepEqual(await walkNames(f.backend, ['name~="^kid-"']), [c1, c2].sort());
      assert.deepEqual(await walkNames(f.backend, ['labels."containerd.io/gc.root"']), [c2]);
      assert.deepEqual(await walkNames(f.backend, ['labels."x/role"==one']), [c1]);
      assert.deepEqual(await walkNames(f.backend, ['labels."x/role"==one', `name==${other}`]), [c1, other].sort(), 'filters are OR-ed');
      assert.deepEqual(await walkNames(f.backend, ['labels."x/role"==one,kind==view']), [], 'comma is AND');
      assert.deepEqual(await walkNames(f.backend, ['kind==committed']), [base]);
    });

    it('remove frees the key and a removed child unblocks its parent', async () => {
      const s = f.backend.snapshotter;
      const base = f.name('base');
      await committed(f.backend, base, undefined, f.leased);
      const child = f.name('child');
      await s.prepare(child, base, f.leased);
      await s.remove(child);
      assert.ok(await isGone(s.stat(child)));
      await s.prepare(child, base, f.leased);
      await s.remove(child);
      await s.remove(base);
      assert.deepEqual(await walkNames(f.backend), []);
    });
  });
}
