/**
 * Apply → diff round trips on every backend, and across backends: GNU tar layers (plain, gzip,
 * zstd) with files, dirs, symlinks, hard links, modes, owners, a whiteout and an opaque dir; the
 * diffID `apply()` returns is checked independently; the differ's gzip and plain diffs re-applied
 * onto the parent give the same tree (compared through real mounts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, layerMediaType } from '@buildcache/snapshot';
import type { Compression } from '@buildcache/snapshot';
import { applyCommit, backendKinds, layerDesc, listSnapshot, openFixture, readBlob, sha256 } from './helpers.js';
import type { Fixture } from './helpers.js';
import { tarEntries } from './tarwriter.js';
import { FINAL, LAYER1, LAYER2, assertSameTree, buildTree, gunzipDiffID, listTree, packLayer } from './trees.js';
import type { Listing, PackedLayer } from './trees.js';

let work = '';
let L1: PackedLayer;
let L2: PackedLayer;
let expectL1: Listing;
let expectFinal: Listing;

/** What each backend produced, for the cross-backend checks. */
interface Produced {
  applied: Record<string, string>;
  diffGzip?: Buffer;
  diffGzipDiffID?: string;
  diffTarDigest?: string;
  fullDiffDiffID?: string;
  /** `type name mode mtime` of each entry of the plain diff, for the report. */
  diffEntries?: string[];
}
const produced = new Map<string, Produced>();

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'bc-conf-layers-'));
  await buildTree(join(work, 'l1'), LAYER1);
  await buildTree(join(work, 'l2'), LAYER2);
  await buildTree(join(work, 'final'), FINAL);
  L1 = await packLayer(join(work, 'l1'), join(work, 'layer1'));
  L2 = await packLayer(join(work, 'l2'), join(work, 'layer2'));
  expectL1 = await listTree(join(work, 'l1'));
  expectFinal = await listTree(join(work, 'final'));
  assert.equal(gunzipDiffID(L1.gzip), L1.diffID, 'GNU tar -czf compresses the same tar as tar -cf');
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

function blobOf(layer: PackedLayer, c: Compression): Buffer {
  return c === 'gzip' ? layer.gzip : c === 'zstd' ? layer.zstd : layer.tar;
}

/** Layer 1 then layer 2 (gzip), committed; returns their names. */
async function chain(f: Fixture): Promise<{ l1: string; l2: string }> {
  const l1 = f.name('l1');
  const l2 = f.name('l2');
  await applyCommit(f, l1, undefined, await layerDesc(f, L1.gzip, MEDIA_TYPE_LAYER_GZIP));
  await applyCommit(f, l2, l1, await layerDesc(f, L2.gzip, MEDIA_TYPE_LAYER_GZIP));
  return { l1, l2 };
}

for (const kind of backendKinds()) {
  describe(`apply and diff [${kind.name}]`, () => {
    let f: Fixture;
    const mine: Produced = { applied: {} };
    produced.set(kind.name, mine);
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    for (const c of ['uncompressed', 'gzip', 'zstd'] as const) {
      it(`applies ${c} layers: diffID = sha256 of the tar, whiteouts and opaque dirs honoured, tree exact`, async () => {
        const l1 = f.name('l1');
        const l2 = f.name('l2');
        const a1 = await applyCommit(f, l1, undefined, await layerDesc(f, blobOf(L1, c), layerMediaType(c)));
        const a2 = await applyCommit(f, l2, l1, await layerDesc(f, blobOf(L2, c), layerMediaType(c)));
        assert.equal(a1.digest, L1.diffID, 'layer 1 diffID');
        assert.equal(a2.digest, L2.diffID, 'layer 2 diffID');
        assert.equal(a1.mediaType, MEDIA_TYPE_LAYER);
        assert.equal(a1.size, L1.tar.length, 'applied size is the uncompressed size');
        mine.applied[`${c}/1`] = a1.digest;
        mine.applied[`${c}/2`] = a2.digest;
        assertSameTree(await listSnapshot(f, l1), expectL1, 'layer 1 tree');
        assertSameTree(await listSnapshot(f, l2), expectFinal, 'layer 1 + 2 tree');
      });
    }

    it('diffs two snapshots (gzip and plain) and re-applying the diff gives the same tree', async () => {
      const b = f.backend;
      const { l1, l2 } = await chain(f);
      const lower = await b.snapshotter.view(f.name('lower'), l1, f.leased);
      const upper = await b.snapshotter.view(f.name('upper'), l2, f.leased);
      const gz = await b.differ.compare(lower, upper, { ...f.leased, mediaType: MEDIA_TYPE_LAYER_GZIP });
      assert.equal(gz.mediaType, MEDIA_TYPE_LAYER_GZIP);
      const gzBytes = await readBlob(b, gz.digest);
      assert.equal(sha256(gzBytes), gz.digest);
      assert.equal(gz.size, gzBytes.length);
      const diffID = gz.annotations?.[LABEL_UNCOMPRESSED];
      assert.equal(diffID, gunzipDiffID(gzBytes), 'annotation containerd.io/uncompressed = sha256 of the gunzipped blob');
      assert.equal((await b.content.info(gz.digest)).labels[LABEL_UNCOMPRESSED], diffID, 'the blob carries the label too');

      const plain = await b.differ.compare(lower, upper, { ...f.leased, mediaType: MEDIA_TYPE_LAYER });
      assert.equal(plain.mediaType, MEDIA_TYPE_LAYER);
      const plainBytes = await readBlob(b, plain.digest);
      assert.equal(sha256(plainBytes), plain.digest);
      mine.diffEntries = tarEntries(plainBytes).map((e) => `${e.type} ${e.name} ${e.mode.toString(8)} ${e.mtime}${e.linkname ? ` -> ${e.linkname}` : ''}`);

      for (const [what, desc] of [['gzip', gz], ['plain', plain]] as const) {
        const name = f.name(`re-${what}`);
        const applied = await applyCommit(f, name, l1, desc);
        assert.equal(applied.digest, what === 'gzip' ? diffID : plain.digest, `${what}: apply returns the diff's diffID`);
        assertSameTree(await listSnapshot(f, name), expectFinal, `${what} diff re-applied on the parent`);
      }
      mine.diffGzip = gzBytes;
      mine.diffGzipDiffID = diffID;
      mine.diffTarDigest = plain.digest;
    });

    it('diffs to zstd (containerd 1.6 has no zstd differ): zstd of the diff tar, labelled, re-applies to the same tree', async () => {
      const b = f.backend;
      const { l1, l2 } = await chain(f);
      const lower = await b.snapshotter.view(f.name('lower'), l1, f.leased);
      const upper = await b.snapshotter.view(f.name('upper'), l2, f.leased);
      const zst = await b.differ.compare(lower, upper, { ...f.leased, mediaType: MEDIA_TYPE_LAYER_ZSTD });
      assert.equal(zst.mediaType, MEDIA_TYPE_LAYER_ZSTD);
      const bytes = await readBlob(b, zst.digest);
      assert.equal(sha256(bytes), zst.digest);
      assert.equal(zst.size, bytes.length);
      const diffID = sha256(execFileSync('zstd', ['-d', '-c', '-q'], { input: bytes }));
      assert.equal(zst.annotations?.[LABEL_UNCOMPRESSED], diffID, 'annotation containerd.io/uncompressed = sha256 of the decompressed blob');
      assert.equal((await b.content.info(zst.digest)).labels[LABEL_UNCOMPRESSED], diffID, 'the blob carries the label too');
      const name = f.name('re-zstd');
      assert.equal((await applyCommit(f, name, l1, zst)).digest, diffID, 'apply returns the diffID');
      assertSameTree(await listSnapshot(f, name), expectFinal, 'zstd diff re-applied on the parent');
    });

    it('a diff against nothing is the whole tree', async () => {
      const b = f.backend;
      const { l2 } = await chain(f);
      const upper = await b.snapshotter.view(f.name('upper'), l2, f.leased);
      const full = await b.differ.compare([], upper, { ...f.leased, mediaType: MEDIA_TYPE_LAYER_GZIP });
      const name = f.name('full');
      const applied = await applyCommit(f, name, undefined, full);
      assert.equal(applied.digest, full.annotations?.[LABEL_UNCOMPRESSED]);
      assertSameTree(await listSnapshot(f, name), expectFinal, 'full diff applied on nothing');
      mine.fullDiffDiffID = applied.digest;
    });
  });
}

describe('apply and diff across backends', () => {
  const kinds = backendKinds();

  it('apply() gives every backend the same diffIDs for the same layers', () => {
    const rows = kinds.map((k) => [k.name, produced.get(k.name)?.applied ?? {}] as const);
    for (const [name, applied] of rows) {
      assert.equal(Object.keys(applied).length, 6, `${name} applied all six layers`);
      assert.deepEqual(applied, rows[0]![1], `${name} vs ${rows[0]![0]}`);
    }
  });

  for (const target of kinds) {
    it(`every backend's diff applies onto ${target.name} to the same tree`, async () => {
      const f = await openFixture(target);
      try {
        const l1 = f.name('l1');
        await applyCommit(f, l1, undefined, await layerDesc(f, L1.gzip, MEDIA_TYPE_LAYER_GZIP));
        for (const source of kinds) {
          const p = produced.get(source.name);
          assert.ok(p?.diffGzip, `${source.name} produced a diff`);
          const name = f.name(`from-${source.name}`);
          const applied = await applyCommit(f, name, l1, await layerDesc(f, p.diffGzip, MEDIA_TYPE_LAYER_GZIP));
          assert.equal(applied.digest, p.diffGzipDiffID, `${source.name}'s diff: same diffID on ${target.name}`);
          assertSameTree(await listSnapshot(f, name), expectFinal, `${source.name}'s diff applied on ${target.name}`);
        }
      } finally {
        await f.close();
      }
    });
  }

  it('diff blobs: same entries everywhere (whiteout mtimes aside); embedded byte-identical in both modes', (t) => {
    const table = kinds.map((k) => ({ backend: k.name, ...pick(produced.get(k.name)) }));
    t.diagnostic(JSON.stringify(table));
    for (const k of kinds) t.diagnostic(`${k.name} plain diff entries: ${JSON.stringify(produced.get(k.name)?.diffEntries)}`);
    // containerd stamps whiteout entries with the time of the diff, so its diffs differ from run to
    // run (and overlayfs from native); everything else in the headers must match the embedded differ
    const normal = (k: string): string[] | undefined =>
      produced.get(k)?.diffEntries?.map((e) => (/(^|\/)\.wh\.[^ ]* /.test(e) ? e.replace(/ \d+$/, ' <mtime>') : e));
    for (const k of kinds) {
      assert.ok(produced.get(k.name)?.diffEntries, `${k.name} produced a diff`);
      assert.deepEqual(normal(k.name), normal(kinds[0]!.name), `${k.name} diff entries vs ${kinds[0]!.name}`);
    }
    const embedded = table.filter((r) => r.backend.startsWith('embedded'));
    for (const r of embedded) {
      assert.equal(r.diffGzipDiffID, embedded[0]!.diffGzipDiffID, `${r.backend} gzip diff diffID vs ${embedded[0]!.backend}`);
      assert.equal(r.diffTarDigest, embedded[0]!.diffTarDigest, `${r.backend} plain diff vs ${embedded[0]!.backend}`);
      assert.equal(r.fullDiffDiffID, embedded[0]!.fullDiffDiffID, `${r.backend} full diff vs ${embedded[0]!.backend}`);
    }
  });
});

function pick(p: Produced | undefined): { diffGzipDiffID?: string; diffTarDigest?: string; fullDiffDiffID?: string } {
  return {
    ...(p?.diffGzipDiffID ? { diffGzipDiffID: p.diffGzipDiffID } : {}),
    ...(p?.diffTarDigest ? { diffTarDigest: p.diffTarDigest } : {}),
    ...(p?.fullDiffDiffID ? { fullDiffDiffID: p.fullDiffDiffID } : {}),
  };
}
