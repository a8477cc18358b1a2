/** Leases and garbage collection with containerd's rules: roots, flat leases, expiry, label refs. */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { afterEach, describe, it } from 'node:test';
import { ErrAlreadyExists, ErrInvalidArgument, ErrNotFound, ErrNotImplemented } from '@buildcache/errdefs';
import type { Backend, Mount } from '../../src/types.js';
import type { EmbeddedBackend } from '../../src/embedded/index.js';
import { UNLEASED_INGEST_TTL_MS } from '../../src/embedded/index.js';
import { availableDrivers, embeddedFactory, rejectsWith, writeBlob } from './helpers.js';
import type { BackendFactory, Harness } from './helpers.js';

const FLAT = { 'containerd.io/gc.flat': '2024-01-01T00:00:00Z' };

/** The directory a prepare mount writes to (bind source or overlay upperdir). */
function ownDir(mounts: readonly Mount[]): string {
  const m = mounts[0]!;
  return m.type === 'overlay' ? m.options.find((o) => o.startsWith('upperdir='))!.slice(9) : m.source;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function has(b: Backend, kind: 'snapshot' | 'content', id: string): Promise<boolean> {
  try {
    if (kind === 'snapshot') await b.snapshotter.stat(id);
    else await b.content.info(id);
    return true;
  } catch (err) {
    if (err instanceof ErrNotFound) return false;
    throw err;
  }
}

/** Prepares and commits `name` (optionally under a lease / with labels); returns its own dir. */
async function committed(b: Backend, name: string, parent?: string, options?: { lease?: string; labels?: Record<string, string> }): Promise<string> {
  const lease = options?.lease ? { lease: options.lease } : {};
  const dir = ownDir(await b.snapshotter.prepare(`${name}-a`, parent, lease));
  await b.snapshotter.commit(name, `${name}-a`, { ...lease, ...(options?.labels ? { labels: options.labels } : {}) });
  return dir;
}

/** The leases + GC suite, runnable against any backend factory. */
export function leasesGcSuite(label: string, factory: BackendFactory): void {
  describe(`leases and GC: ${label}`, () => {
    let h: Harness | undefined;
    const fresh = async (): Promise<Backend> => {
      h = await factory();
      return h.backend;
    };
    afterEach(async () => {
      await h?.dispose();
      h = undefined;
    });

    it('manages leases and their resources', async () => {
      const b = await fresh();
      const l = await b.leases.create('lease-a', { 'x/k': 'v' });
      assert.equal(l.id, 'lease-a');
      assert.deepEqual(l.labels, { 'x/k': 'v' });
      await b.leases.create('lease-b');
      await rejectsWith(b.leases.create('lease-a'), ErrAlreadyExists, 'lease-a');
      assert.deepEqual((await b.leases.list(['labels."x/k"==v'])).map((x) => x.id), ['lease-a']);
      assert.deepEqual((await b.leases.list(['id==lease-b', 'id==lease-a'])).map((x) => x.id).sort(), ['lease-a', 'lease-b']);
      await b.leases.addResource('lease-a', { type: 'snapshots/' + b.snapshotter.name, id: 'not-yet-there' });
      await b.leases.addResource('lease-a', { type: 'ingests', id: 'some-ref' });
      assert.equal((await b.leases.listResources('lease-a')).length, 2);
      await b.leases.deleteResource('lease-a', { type: 'ingests', id: 'some-ref' });
      assert.deepEqual(await b.leases.listResources('lease-a'), [{ type: 'snapshots/' + b.snapshotter.name, id: 'not-yet-there' }]);
      await rejectsWith(b.leases.addResource('lease-a', { type: 'bogus/x', id: 'y' }), ErrNotImplemented);
      await rejectsWith(b.leases.addResource('lease-a', { type: 'content', id: 'not-a-digest' }), ErrInvalidArgument);
      await rejectsWith(b.leases.addResource('nope', { type: 'ingests', id: 'y' }), ErrNotFound, 'nope');
      await rejectsWith(b.leases.create('flat', { 'containerd.io/gc.flat': '' }), ErrInvalidArgument, 'containerd.io/gc.flat');
      await rejectsWith(b.leases.create('bad id!'), ErrInvalidArgument);
      await b.leases.delete('lease-b');
      await rejectsWith(b.leases.delete('lease-b'), ErrNotFound, 'lease-b');
      await rejectsWith(b.leases.listResources('lease-b'), ErrNotFound);
    });

    it('collects exactly the unleased objects, from disk too', async () => {
      const b = await fresh();
      await b.leases.create('keep');
      const keptDir = await committed(b, 'kept', undefined, { lease: 'keep' });
      const freeDir = await committed(b, 'free');
      const activeDir = ownDir(await b.snapshotter.prepare('free-active', undefined));
      const keptBlob = await writeBlob(b, 'kept blob', { lease: 'keep' });
      const freeBlob = await writeBlob(b, 'free blob');
      const stats = await b.garbageCollect();
      assert.equal(stats.snapshotsRemoved, 2);
      assert.equal(stats.contentRemoved, 1);
      assert.equal(stats.leasesRemoved, 0);
      assert.ok(await has(b, 'snapshot', 'kept'));
      assert.ok(await has(b, 'content', keptBlob));
      assert.ok(!(await has(b, 'snapshot', 'free')));
      assert.ok(!(await has(b, 'snapshot', 'free-active')));
      assert.ok(!(await has(b, 'content', freeBlob)));
      if (b.kind === 'embedded') {
        const eb = b as EmbeddedBackend;
        assert.ok(await exists(keptDir));
        assert.ok(!(await exists(freeDir)), 'unleased committed snapshot dir is gone');
        assert.ok(!(await exists(activeDir)), 'unleased active snapshot dir is gone');
        assert.ok(await exists(eb.content.blobPath(keptBlob)));
        assert.ok(!(await exists(eb.content.blobPath(freeBlob))), 'unleased blob file is gone');
      }
      const again = await b.garbageCollect();
      assert.deepEqual([again.snapshotsRemoved, again.contentRemoved], [0, 0]);
    });

    it('a flat lease keeps its blob but not the blob it references; a normal lease keeps both', async () => {
      const b = await fresh();
      const target = await writeBlob(b, 'B');
      await b.leases.create('hold-b-briefly');
      await b.leases.addResource('hold-b-briefly', { type: 'content', id: target });
      await b.leases.create('flat', FLAT);
      await b.leases.create('normal');
      const flatHeld = await writeBlob(b, 'A-flat', { lease: 'flat', labels: { 'containerd.io/gc.ref.content.x': target } });
      await b.garbageCollect();
      await b.leases.delete('hold-b-briefly');
      await b.garbageCollect();
      assert.ok(await has(b, 'content', flatHeld));
      assert.ok(!(await has(b, 'content', target)), 'flat lease does not follow label refs');

      const target2 = await writeBlob(b, 'B2');
      await b.leases.addResource('normal', { type: 'content', id: target2 }); // hold while labelling
      const normalHeld = await writeBlob(b, 'A-normal', { lease: 'normal', labels: { 'containerd.io/gc.ref.content': target2 } });
      await b.leases.deleteResource('normal', { type: 'content', id: target2 });
      await b.garbageCollect();
      assert.ok(await has(b, 'content', normalHeld));
      assert.ok(await has(b, 'content', target2), 'normal lease follows label refs');
    });

    it('a flat-leased child keeps its parent chain but not its label refs', async () => {
      const b = await fresh();
      await b.leases.create('build', FLAT);
      await b.leases.create('tmp');
      const blob = await writeBlob(b, 'ref by child', { lease: 'tmp' });
      await committed(b, 'p1', undefined, { lease: 'tmp' });
      await committed(b, 'p2', 'p1', { lease: 'tmp' });
      await b.snapshotter.prepare('child', 'p2', { lease: 'build', labels: { 'containerd.io/gc.ref.content.l': blob } });
      await b.leases.delete('tmp', { sync: true });
      for (const name of ['child', 'p2', 'p1']) assert.ok(await has(b, 'snapshot', name), name);
      assert.ok(!(await has(b, 'content', blob)));
    });

    it('expired leases are removed with what only they held; invalid expiry never expires', async () => {
      const b = await fresh();
      await b.leases.create('old', { 'containerd.io/gc.expire': '2000-01-01T00:00:00Z' });
      await b.leases.create('odd', { 'containerd.io/gc.expire': 'not a time' });
      await b.leases.create('later', { 'containerd.io/gc.expire': '2999-01-01T00:00:00.5+02:00' });
      await committed(b, 'old-snap', undefined, { lease: 'old' });
      const oldBlob = await writeBlob(b, 'old', { lease: 'old' });
      await committed(b, 'odd-snap', undefined, { lease: 'odd' });
      await committed(b, 'later-snap', undefined, { lease: 'later' });
      const stats = await b.garbageCollect();
      assert.equal(stats.leasesRemoved, 1);
      assert.deepEqual((await b.leases.list()).map((l) => l.id).sort(), ['later', 'odd']);
      assert.ok(!(await has(b, 'snapshot', 'old-snap')));
      assert.ok(!(await has(b, 'content', oldBlob)));
      assert.ok(await has(b, 'snapshot', 'odd-snap'));
      assert.ok(await has(b, 'snapshot', 'later-snap'));
    });

    it('gc.root keeps an object, its parents and (non-flat) its references', async () => {
      const b = await fresh();
      await b.leases.create('tmp');
      const ref = await writeBlob(b, 'referenced', { lease: 'tmp' });
      const rooted = await writeBlob(b, 'rooted', { labels: { 'containerd.io/gc.root': 'yes', 'containerd.io/gc.ref.content.a/b': ref } });
      await committed(b, 'base', undefined, { lease: 'tmp' });
      await committed(b, 'top', 'base', { lease: 'tmp', labels: { 'containerd.io/gc.root': '1' } });
      const snapRef = await writeBlob(b, 'snapshot-ref', { lease: 'tmp' });
      await b.snapshotter.update({ name: 'top', labels: { 'containerd.io/gc.ref.content': snapRef } }, ['labels.containerd.io/gc.ref.content']);
      await b.leases.delete('tmp', { sync: true });
      for (const d of [ref, rooted, snapRef]) assert.ok(await has(b, 'content', d), d);
      assert.ok(await has(b, 'snapshot', 'top'));
      assert.ok(await has(b, 'snapshot', 'base'));
    });

    it('content labelled gc.ref.snapshot.<name> keeps that snapshot', async () => {
      const b = await fresh();
      await b.leases.create('l');
      await committed(b, 'by-label');
      await committed(b, 'other-ss');
      await writeBlob(b, 'config', {
        lease: 'l',
        labels: { [`containerd.io/gc.ref.snapshot.${b.snapshotter.name}`]: 'by-label', 'containerd.io/gc.ref.snapshot.nosuch/x': 'other-ss' },
      });
      await b.garbageCollect();
      assert.ok(await has(b, 'snapshot', 'by-label'));
      assert.ok(!(await has(b, 'snapshot', 'other-ss')));
    });

    it('commit under a lease replaces the key by the name in that lease', async () => {
      const b = await fresh();
      await b.leases.create('l');
      await b.snapshotter.prepare('k', undefined, { lease: 'l' });
      const type = `snapshots/${b.snapshotter.name}`;
      assert.deepEqual(await b.leases.listResources('l'), [{ type, id: 'k' }]);
      await b.snapshotter.commit('n', 'k', { lease: 'l' });
      assert.deepEqual(await b.leases.listResources('l'), [{ type, id: 'n' }]);
      await b.garbageCollect();
      assert.ok(await has(b, 'snapshot', 'n'));
    });

    it('creating under a missing lease fails and creates nothing', async () => {
      const b = await fresh();
      await rejectsWith(b.snapshotter.prepare('x', undefined, { lease: 'ghost' }), ErrNotFound, 'ghost');
      await rejectsWith(b.snapshotter.stat('x'), ErrNotFound);
    });

    it('collects an unleased chain entirely (children before parents) and keeps a leased one', async () => {
      const b = await fresh();
      const dirs = [await committed(b, 'c1'), await committed(b, 'c2', 'c1'), await committed(b, 'c3', 'c2')];
      await b.snapshotter.view('c-view', 'c3');
      await b.leases.create('l', FLAT);
      await committed(b, 'k1');
      await b.snapshotter.prepare('k2', 'k1', { lease: 'l' });
      const stats = await b.garbageCollect();
      assert.equal(stats.snapshotsRemoved, 4);
      for (const n of ['c1', 'c2', 'c3', 'c-view']) assert.ok(!(await has(b, 'snapshot', n)), n);
      assert.ok(await has(b, 'snapshot', 'k1'));
      if (b.kind === 'embedded') for (const d of dirs) assert.ok(!(await exists(d)), d);
      await b.snapshotter.remove('k2');
      await b.snapshotter.remove('k1'); // no stale child left behind by GC
    });
  });
}

describe('GC: embedded clock-driven expiry and stale ingests', () => {
  let h: Harness<EmbeddedBackend> | undefined;
  afterEach(async () => {
    await h?.dispose();
  });

  it('expires a lease once the clock passes gc.expire', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    h = await embeddedFactory('native')({ clock: () => now });
    const b = h.backend;
    await b.leases.create('temp', { 'containerd.io/gc.expire': '2030-01-01T01:00:00Z' });
    const blob = await writeBlob(b, 'temp data', { lease: 'temp' });
    assert.equal((await b.garbageCollect()).contentRemoved, 0);
    now += 2 * 3600_000;
    const stats = await b.garbageCollect();
    assert.deepEqual([stats.leasesRemoved, stats.contentRemoved], [1, 1]);
    assert.ok(!(await exists(b.content.blobPath(blob))));
  });

  it('removes unleased ingests 24 h after their last open, keeps leased and fresh ones', async () => {
    let now = Date.now();
    h = await embeddedFactory('native')({ clock: () => now });
    const b = h.backend;
    await b.leases.create('l');
    for (const [ref, lease] of [['free', undefined], ['leased', 'l']] as const) {
      const w = await b.content.writer(ref, lease ? { lease } : {});
      await w.write(Buffer.from('partial'));
      await w.close();
    }
    await b.garbageCollect();
    assert.equal((await b.content.listStatuses()).length, 2);
    now += UNLEASED_INGEST_TTL_MS + 60_000;
    const open = await b.content.writer('busy');
    await b.garbageCollect();
    assert.deepEqual((await b.content.listStatuses()).map((s) => s.ref).sort(), ['busy', 'leased']);
    await open.close();
  });
});

for (const driver of await availableDrivers()) leasesGcSuite(`embedded ${driver}`, embeddedFactory(driver));
