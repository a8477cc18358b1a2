/** Sizes, export (getRemote) and import (getByBlob, lazy extract) on every backend. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import type { Backend } from '@buildcache/snapshot';
import { ErrInvalidArgument, ErrNeedsRemoteProvider, ErrNotFound } from '@buildcache/errdefs';
import type { ImmutableRef } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, writeFiles, type TestCache } from './helpers.js';
import { providerFor, readBlob, sha256, tarLayer, unzstd } from './layers.js';

/** A backend whose snapshot usage calls are counted (the real backend does the work). */
function counting(b: Backend, counter: { usage: number }): Backend {
  const snapshotter = Object.create(b.snapshotter) as Backend['snapshotter'];
  snapshotter.usage = async (key: string) => {
    counter.usage++;
    return b.snapshotter.usage(key);
  };
  return {
    kind: b.kind,
    snapshotter,
    content: b.content,
    leases: b.leases,
    applier: b.applier,
    differ: b.differ,
    mounter: b.mounter,
    garbageCollect: () => b.garbageCollect(),
    close: () => b.close(),
  };
}

for (const kind of BACKENDS) {
  describe(`cache blobs and sizes on ${kind.name}`, () => {
    let t: TestCache;
    before(async () => {
      t = await openTestCache(kind);
    });
    after(async () => {
      await t.close();
    });

    test('size of a chain; concurrent size() calls share one usage computation', async () => {
      const counter = { usage: 0 };
      const { CacheManager } = await import('@buildcache/cache');
      const { pino } = await import('pino');
      const cache = await CacheManager.open({
        root: join(t.tb.dir, 'counted'),
        backend: counting(t.tb.backend, counter),
        logger: pino({ level: 'silent' }),
      });
      try {
        const m = await cache.new();
        await writeFiles(m, { 'big.bin': 'x'.repeat(100_000) });
        const base = await m.commit();
        await base.finalize();
        counter.usage = 0;
        const sizes = await Promise.all(Array.from({ length: 20 }, () => base.size()));
        assert.equal(counter.usage, 1, 'one usage computation for 20 callers');
        assert.ok(sizes.every((s) => s === sizes[0]));
        assert.ok(sizes[0]! >= 100_000 && sizes[0]! < 100_000 + 256 * 1024, `size ${sizes[0]} near the file size`);
        assert.equal(await base.size(), sizes[0]);
        assert.equal(counter.usage, 1, 'the size is kept');

        const m2 = await cache.new(base);
        await writeFiles(m2, { 'small.txt': 'y'.repeat(5000) });
        const top = await m2.commit();
        await top.finalize();
        const topSize = await top.size();
        if (kind.name.endsWith('native')) {
          // a native snapshot is a full copy of its parent, and its usage says so (as containerd's)
          assert.ok(topSize >= 105_000, `native child holds a copy of its parent (${topSize})`);
        } else {
          assert.ok(topSize >= 5000 && topSize < 100_000, `overlay child counts only its own layer (${topSize})`);
        }
        await top.release();
        await base.release();
        await cache.prune([{}]);
      } finally {
        await cache.close();
      }
    });

    test('getRemote with an unknown compression name is ErrInvalidArgument and creates no blob', async () => {
      const m = await t.cache.new();
      await writeFiles(m, { 'etc/a': 'A' });
      const ref = await m.commit();
      for (const compression of ['zst', 'lz4', ''] as const) {
        await assert.rejects(ref.getRemote({ compression: compression as 'zstd' }), ErrInvalidArgument);
        await assert.rejects(ref.getRemote({ compression: compression as 'zstd', force: true }), ErrInvalidArgument);
      }
      assert.equal(ref.info().blob, undefined, 'no blob was made');
      await ref.release();
    });

    test('getRemote: blobs whose uncompressed sha256 is the diffID, chainIDs by the OCI rule', async () => {
      const { cache } = t;
      const m = await cache.new();
      await writeFiles(m, { 'etc/a': 'A', 'etc/gone': 'soon deleted' });
      const base = await m.commit();
      const m2 = await cache.new(base);
      await writeFiles(m2, { 'etc/b': 'B', 'etc/gone': null });
      const top = await m2.commit();
      const descs = await top.getRemote({ compression: 'gzip' });
      assert.equal(descs.length, 2);
      const chain = top.layerChain();
      const diffIDs: string[] = [];
      for (const [i, d] of descs.entries()) {
        const blob = await readBlob(t.tb.backend, d.digest);
        assert.equal(sha256(blob), d.digest);
        assert.equal(blob.length, d.size);
        const diffID = sha256(gunzipSync(blob));
        assert.equal(d.annotations?.['containerd.io/uncompressed'], diffID);
        assert.equal(chain[i]!.info().diffID, diffID);
        diffIDs.push(diffID);
      }
      const listing = gunzipSync(await readBlob(t.tb.backend, descs[1]!.digest)).toString('latin1');
      assert.match(listing, /etc\/\.wh\.gone/, 'the deletion is a whiteout in the child layer');
      const chain1 = 'sha256:' + createHash('sha256').update(`${diffIDs[0]} ${diffIDs[1]}`).digest('hex');
      assert.equal(chain[0]!.info().chainID, diffIDs[0]);
      assert.equal(chain[1]!.info().chainID, chain1);
      const again = await top.getRemote();
      assert.deepEqual(again, descs, 'blobs are computed once');

      // compression variants: converted once, same diffIDs, counted in size, collected with the record
      const sizeBefore = await top.size();
      const zstd = await top.getRemote({ compression: 'zstd', force: true });
      assert.deepEqual(zstd.map((d) => d.mediaType), ['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+zstd']);
      for (const [i, d] of zstd.entries()) {
        const blob = await readBlob(t.tb.backend, d.digest);
        assert.equal(sha256(blob), d.digest);
        assert.equal(sha256(unzstd(blob)), diffIDs[i], 'a zstd variant of the same layer');
        assert.equal(d.annotations?.['containerd.io/uncompressed'], diffIDs[i]);
      }
      assert.deepEqual(await top.getRemote({ compression: 'zstd', force: true }), zstd, 'variants are made once');
      assert.deepEqual(await top.getRemote({ compression: 'zstd' }), descs, 'without force, the blobs the layers have');
      assert.equal(await top.size(), sizeBefore + zstd[1]!.size, 'the variant counts in the size');
      await t.tb.backend.garbageCollect();
      assert.equal((await t.tb.backend.content.info(zstd[1]!.digest)).size, zstd[1]!.size, 'the variants lease keeps it');
      for (const r of chain) await r.release();
      await top.release();
      await base.release();
      await cache.prune([{}]);
      for (const d of [...descs, ...zstd]) {
        await assert.rejects(t.tb.backend.content.info(d.digest), ErrNotFound, 'blobs and variants are collected with their records');
      }
    });

    test('getRemote zstd: the layer\'s own blob is made as zstd, and no uncompressed blob is left behind', async () => {
      const { cache } = t;
      const m = await cache.new(undefined, { description: 'zstd layer' });
      await writeFiles(m, { 'etc/zstd': 'compressed in zstd' });
      const layer = await m.commit();
      const [desc] = await layer.getRemote({ compression: 'zstd' });
      assert.equal(desc!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
      const blob = await readBlob(t.tb.backend, desc!.digest);
      assert.equal(sha256(blob), desc!.digest);
      const diffID = sha256(unzstd(blob));
      assert.equal(desc!.annotations?.['containerd.io/uncompressed'], diffID);
      assert.equal(layer.info().diffID, diffID);
      await t.tb.backend.garbageCollect();
      await assert.rejects(t.tb.backend.content.info(diffID), ErrNotFound, 'no uncompressed copy of the layer is kept');
      await layer.release();
      await cache.prune([{}]);
    });

    test('getByBlob: lazy records, dedupe by blob chain, extraction through a provider', async () => {
      const { cache } = t;
      const l0 = tarLayer({ 'etc/hello': 'hello', 'bin/tool': '#!/bin/sh\n' });
      const l1 = tarLayer({ 'etc/world': 'world' });
      const fetched: string[] = [];
      const descHandlers = providerFor([l0, l1], fetched);
      await assert.rejects(cache.getByBlob(l0.desc), ErrNeedsRemoteProvider);

      const r0 = await cache.getByBlob(l0.desc, undefined, { descHandlers });
      assert.equal(r0.info().extracted, false);
      assert.equal(r0.info().chainID, l0.desc.annotations!['containerd.io/uncompressed']);
      const r1 = await cache.getByBlob(l1.desc, r0, { descHandlers });
      const dup = await cache.getByBlob(l1.desc, r0, { descHandlers });
      assert.equal(dup.id, r1.id, 'same blob chain → same record');
      assert.deepEqual(fetched, [], 'nothing fetched before use');

      assert.equal(await readFileOf(r1, 'etc/hello'), 'hello');
      assert.equal(await readFileOf(r1, 'etc/world'), 'world');
      assert.deepEqual(fetched.sort(), [l0.desc.digest, l1.desc.digest].sort());
      assert.equal(r1.info().extracted, true);
      assert.equal(r0.info().extracted, true);
      const remote = await r1.getRemote();
      assert.deepEqual(remote.map((d) => d.digest), [l0.desc.digest, l1.desc.digest], 'exports the imported blobs');
      for (const r of [dup, r1, r0] as ImmutableRef[]) await r.release();
      await cache.prune([{}]);
    });
  });
}
