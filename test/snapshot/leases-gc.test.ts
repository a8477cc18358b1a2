/**
 * Leases and garbage collection (containerd-api.md §3–§4) on every backend: leased objects survive
 * `garbageCollect()`, unleased ones go; flat vs normal leases and label references; parent chains;
 * expiry; gc.root; delete with sync; GC removes exactly the unreferenced objects (also on disk), however many.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LABEL_GC_EXPIRE, LABEL_GC_FLAT, LABEL_GC_REF_CONTENT, LABEL_GC_REF_SNAPSHOT, LABEL_GC_ROOT } from '@buildcache/snapshot';
import { backendKinds, blobFile, collect, committed, isGone, openFixture, ownDir, writeBlob } from './helpers.js';
import type { Fixture } from './helpers.js';

const FLAT = { [LABEL_GC_FLAT]: '2024-01-01T00:00:00Z' };

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** Random bytes so that a digest is unique to this test (containerd shares blobs across namespaces). */
function unique(tag: string): Buffer {
  return Buffer.concat([Buffer.from(`${tag}:`), randomBytes(32)]);
}

for (const kind of backendKinds()) {
  describe(`leases and GC [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    /** A lease that holds objects only until the test deletes it (so they exist before GC decides). */
    async function scratch(): Promise<string> {
      const id = f.name('scratch');
      await f.backend.leases.create(id, {});
      return id;
    }

    it('objects created under a lease survive GC, unleased ones are collected', async () => {
      const b = f.backend;
      const keep = await writeBlob(b, unique('keep'), f.leased);
      const tmp = await scratch();
      const drop = await writeBlob(b, unique('drop'), { lease: tmp });
      const kept = f.name('kept');
      await committed(b, kept, undefined, f.leased);
      const dropped = f.name('dropped');
      await committed(b, dropped, undefined, { lease: tmp });
      const res = await b.leases.listResources(f.lease);
      assert.ok(res.some((r) => r.type === 'content' && r.id === keep), 'blob is a resource of the lease');
      assert.ok(res.some((r) => r.type === `snapshots/${b.snapshotter.name}` && r.id === kept), 'commit moved the name into the lease');
      assert.ok(!res.some((r) => r.id === `${kept}-active`), 'commit removed the active key from the lease');
      await b.leases.delete(tmp);
      await b.garbageCollect();
      assert.equal((await b.content.info(keep)).digest, keep);
      assert.equal((await b.snapshotter.stat(kept)).kind, 'committed');
      assert.ok(await isGone(b.content.info(drop)), 'unleased blob collected');
      assert.ok(await isGone(b.snapshotter.stat(dropped)), 'unleased snapshot collected');
    });

    it('a flat lease keeps blob A but not blob B referenced by A; a normal lease keeps both', async () => {
      const b = f.backend;
      const flat = f.name('flat');
      await b.leases.create(flat, FLAT);
      const tmp = await scratch();
      const fb = await writeBlob(b, unique('flat-B'), { lease: tmp });
      const fa = await writeBlob(b, unique('flat-A'), { lease: flat, labels: { [`${LABEL_GC_REF_CONTENT}.l0`]: fb } });
      const nb = await writeBlob(b, unique('normal-B'), { lease: tmp });
      const na = await writeBlob(b, unique('normal-A'), { ...f.leased, labels: { [`${LABEL_GC_REF_CONTENT}.l0`]: nb } });
      await b.leases.delete(tmp);
      await b.garbageCollect();
      assert.equal((await b.content.info(fa)).digest, fa, 'flat lease keeps A');
      assert.ok(await isGone(b.content.info(fb)), 'flat lease does not follow A → B');
      assert.equal((await b.content.info(na)).digest, na, 'normal lease keeps A');
      assert.equal((await b.content.info(nb)).digest, nb, 'normal lease follows A → B');
    });

    it("a leased child keeps its parent chain, also under a flat lease (but not the child's label refs)", async () => {
      const b = f.backend;
      const flat = f.name('flat');
      await b.leases.create(flat, FLAT);
      const tmp = await scratch();
      const base = f.name('base');
      await committed(b, base, undefined, { lease: tmp });
      const mid = f.name('mid');
      await committed(b, mid, base, { lease: tmp });
      const ref = await writeBlob(b, unique('child-ref'), { lease: tmp });
      const child = f.name('child');
      await committed(b, child, mid, { lease: flat, labels: { [`${LABEL_GC_REF_CONTENT}.x`]: ref } });
      await b.leases.delete(tmp);
      await b.garbageCollect();
      for (const name of [child, mid, base]) assert.equal((await b.snapshotter.stat(name)).kind, 'committed', name);
      assert.ok(await isGone(b.content.info(ref)), "flat lease drops the child's gc.ref.content target");
    });

    it('content labelled gc.ref.snapshot keeps that snapshot', async () => {
      const b = f.backend;
      const tmp = await scratch();
      const snap = f.name('snap');
      await committed(b, snap, undefined, { lease: tmp });
      await writeBlob(b, unique('holder'), { ...f.leased, labels: { [`${LABEL_GC_REF_SNAPSHOT}.${b.snapshotter.name}`]: snap } });
      await b.leases.delete(tmp);
      await b.garbageCollect();
      assert.equal((await b.snapshotter.stat(snap)).kind, 'committed');
    });

    it('an expired lease is collected with its objects; a future expiry keeps them', async () => {
      const b = f.backend;
      const expired = f.name('expired');
      await b.leases.create(expired, { [LABEL_GC_EXPIRE]: '2000-01-01T00:00:00Z' });
      const later = f.name('later');
      await b.leases.create(later, { [LABEL_GC_EXPIRE]: new Date(Date.now() + 3600_000).toISOString() });
      const gone = await writeBlob(b, unique('expired'), { lease: expired });
      const goneSnap = f.name('expired-snap');
      await committed(b, goneSnap, undefined, { lease: expired });
      const stays = await writeBlob(b, unique('later'), { lease: later });
      await b.garbageCollect();
      const ids = (await b.leases.list()).map((l) => l.id);
      assert.ok(!ids.includes(expired), 'the expired lease itself is deleted by GC');
      assert.ok(ids.includes(later));
      assert.ok(await isGone(b.content.info(gone)));
      assert.ok(await isGone(b.snapshotter.stat(goneSnap)));
      assert.equal((await b.content.info(stays)).digest, stays);
    });

    it('gc.root keeps content and snapshots without a lease until the label goes', async () => {
      const b = f.backend;
      const tmp = await scratch();
      const blob = await writeBlob(b, unique('root'), { lease: tmp, labels: { [LABEL_GC_ROOT]: 'yes' } });
      const snap = f.name('root-snap');
      await committed(b, snap, undefined, { lease: tmp, labels: { [LABEL_GC_ROOT]: 'yes' } });
      await b.leases.delete(tmp);
      await b.garbageCollect();
      assert.equal((await b.content.info(blob)).digest, blob);
      assert.equal((await b.snapshotter.stat(snap)).kind, 'committed');
      await b.content.update({ digest: blob, labels: {} }, [`labels.${LABEL_GC_ROOT}`]);
      await b.snapshotter.update({ name: snap, labels: {} }, [`labels.${LABEL_GC_ROOT}`]);
      await b.garbageCollect();
      assert.ok(await isGone(b.content.info(blob)));
      assert.ok(await isGone(b.snapshotter.stat(snap)));
    });

    it('a part-written upload goes at the first GC after its lease; one opened without a lease stays', async () => {
      const b = f.backend;
      const tmp = await scratch();
      const leasedRef = f.name('upload-leased');
      const freeRef = f.name('upload-free');
      for (const [ref, opts] of [[leasedRef, { lease: tmp }], [freeRef, {}]] as const) {
        const w = await b.content.writer(ref, opts);
        await w.write(unique(ref)); // abandoned mid-stream: the writer goes away without commit or abort
        await w.close();
      }
      await b.garbageCollect();
      assert.ok((await b.content.status(leasedRef)).offset > 0, 'kept while its lease lives');
      await b.leases.delete(tmp);
      await b.garbageCollect();
      assert.ok(await isGone(b.content.status(leasedRef)), 'no lease holds it any more: removed');
      assert.ok((await b.content.status(freeRef)).offset > 0, 'opened without a lease: kept (24 h)');
      await b.content.abort(freeRef);
    });

    it('deleting a lease with sync collects its objects before returning', async () => {
      const b = f.backend;
      const l = f.name('sync');
      await b.leases.create(l, {});
      const blob = await writeBlob(b, unique('sync'), { lease: l });
      const snap = f.name('sync-snap');
      await committed(b, snap, undefined, { lease: l });
      await b.leases.delete(l, { sync: true });
      assert.ok(await isGone(b.content.info(blob)));
      assert.ok(await isGone(b.snapshotter.stat(snap)));
      assert.ok(!(await b.leases.list()).some((x) => x.id === l));
    });

    it('deleteMany deletes the named leases that exist, skips missing and repeated names, and leaves the others', async () => {
      const b = f.backend;
      const [a, c, other] = [f.name('many-a'), f.name('many-c'), f.name('many-other')];
      const held: Record<string, { blob: string; snap: string }> = {};
      for (const l of [a, c, other]) {
        await b.leases.create(l, {});
        const snap = f.name(`${l}-snap`);
        await committed(b, snap, undefined, { lease: l });
        held[l] = { blob: await writeBlob(b, unique(l), { lease: l }), snap };
      }
      await b.leases.deleteMany([a, f.name('never-made'), c, a]);
      const left = (await b.leases.list()).map((x) => x.id);
      assert.ok(!left.includes(a) && !left.includes(c), 'both named leases are gone');
      assert.ok(left.includes(other), 'a lease not named stays');
      await assert.rejects(b.leases.listResources(a), { code: 'ERR_NOT_FOUND' });
      assert.equal((await b.leases.listResources(other)).length, 2, 'the other lease keeps its resources');
      // A lease made again under a deleted name starts empty.
      await b.leases.create(a, {});
      assert.deepEqual(await b.leases.listResources(a), []);
      await b.leases.delete(a);
      await b.garbageCollect();
      for (const l of [a, c]) {
        assert.ok(await isGone(b.content.info(held[l]!.blob)), `${l}'s blob collected`);
        assert.ok(await isGone(b.snapshotter.stat(held[l]!.snap)), `${l}'s snapshot collected`);
      }
      assert.equal((await b.content.info(held[other]!.blob)).digest, held[other]!.blob);
      assert.equal((await b.snapshotter.stat(held[other]!.snap)).kind, 'committed');
      await b.leases.deleteMany([]);
    });

    it('GC deletes exactly the unreferenced objects, and their files', async () => {
      const b = f.backend;
      const tmp = await scratch();
      const s = b.snapshotter.name;
      // kept: leased A → (label) C → (label) snapshot S2 ← child S3 (leased); S1 leased
      const s1 = f.name('s1');
      const s1dir = ownDir(await committed(b, s1, undefined, f.leased));
      const s2 = f.name('s2');
      const s2dir = ownDir(await committed(b, s2, undefined, { lease: tmp }));
      const c = await writeBlob(b, unique('C'), { lease: tmp, labels: { [`${LABEL_GC_REF_SNAPSHOT}.${s}/x`]: s2 } });
      const a = await writeBlob(b, unique('A'), { ...f.leased, labels: { [`${LABEL_GC_REF_CONTENT}/x`]: c } });
      // collected: D, E (E referenced only by D), snapshots U1 ← U2
      const e = await writeBlob(b, unique('E'), { lease: tmp });
      const d = await writeBlob(b, unique('D'), { lease: tmp, labels: { [`${LABEL_GC_REF_CONTENT}.e`]: e } });
      const u1 = f.name('u1');
      const u1dir = ownDir(await committed(b, u1, undefined, { lease: tmp }));
      const u2 = f.name('u2');
      const u2dir = ownDir(await b.snapshotter.prepare(u2, u1, { lease: tmp }));
      const files = new Map([a, c, d, e].map((dg) => [dg, blobFile(b, dg)]));
      for (const [dg, file] of files) if (file) assert.ok(await exists(file), `blob file of ${dg} exists before GC`);
      for (const dir of [s1dir, s2dir, u1dir, u2dir]) assert.ok(await exists(dir), `${dir} exists before GC`);

      await b.leases.delete(tmp);
      const stats = await b.garbageCollect();
      const snaps = (await collect(b.snapshotter.walk())).map((i) => i.name).sort();
      const blobs = (await collect(b.content.walk())).map((i) => i.digest).sort();
      assert.deepEqual(snaps, [s1, s2].sort());
      assert.deepEqual(blobs, [a, c].sort());
      if (stats.contentRemoved !== undefined) {
        // backends that report counts (the embedded one) must count what went
        assert.ok(stats.contentRemoved >= 2 && (stats.snapshotsRemoved ?? 0) >= 2, `stats ${JSON.stringify(stats)}`);
      }
      for (const dg of [d, e]) {
        const file = files.get(dg);
        if (file) assert.equal(await exists(file), false, `blob file of ${dg} removed`);
      }
      for (const dg of [a, c]) {
        const file = files.get(dg);
        if (file) assert.equal(await exists(file), true, `blob file of ${dg} kept`);
      }
      assert.equal(await exists(u1dir), false, 'collected snapshot dir removed');
      assert.equal(await exists(u2dir), false, 'collected active snapshot dir removed');
      assert.equal(await exists(s1dir), true);
      assert.equal(await exists(s2dir), true);
    });

    it('a collection of more snapshots than one write batch holds removes them all and keeps the leased one', async () => {
      const b = f.backend;
      const tmp = await scratch();
      const kept = f.name('kept');
      await committed(b, kept, undefined, f.leased);
      // 700 snapshots in chains of ten: three deletions each, more than the embedded GC writes at once.
      const dirs: string[] = [];
      for (let chain = 0; chain < 70; chain++) {
        let parent: string | undefined;
        for (let i = 0; i < 10; i++) {
          const name = f.name(`c${chain}-${i}`);
          const mounts = await committed(b, name, parent, { lease: tmp });
          if (i === 9) dirs.push(ownDir(mounts));
          parent = name;
        }
      }
      await b.leases.delete(tmp);
      const stats = await b.garbageCollect();
      assert.deepEqual((await collect(b.snapshotter.walk())).map((i) => i.name), [kept]);
      if (stats.snapshotsRemoved !== undefined) assert.ok(stats.snapshotsRemoved >= 700, `stats ${JSON.stringify(stats)}`);
      for (const dir of dirs) assert.equal(await exists(dir), false, `${dir} removed`);
    });
  });
}
