/**
 * getRemote / getRemotes on every backend: an upload interrupted by a killed process, lazy blobs
 * fetched when a conversion needs them, `createIfNeeded: false`, `all`, and non-distributable layers.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import type { Descriptor } from '@buildcache/snapshot';
import { ErrNeedsRemoteProvider, ErrNoBlobs } from '@buildcache/errdefs';
import type { ImmutableRef, RemoteOptions } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, writeFiles, type TestCache } from './helpers.js';
import { providerFor, readBlob, sha256, tarLayer, unzstd, zstdLayer, type Layer } from './layers.js';
import type { UploadWorkerConfig } from './fixtures/upload-worker.js';

const worker = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'upload-worker.js');
const DIFF_ID = 'containerd.io/uncompressed';
const OCI_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const OCI_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';

/** Runs the upload worker and SIGKILLs it as soon as it reports a part-written upload; returns its lines. */
function runUntilPartial(cfg: UploadWorkerConfig): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      lines.push(...d.split('\n').filter(Boolean));
      if (lines.includes('partial')) child.kill('SIGKILL');
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' || code === 0) resolve(lines);
      else reject(new Error(`upload worker failed (${code}): ${stderr}`));
    });
  });
}

/** A layer with content unique to this call (containerd keeps blobs daemon-wide). */
function uniqueLayer(name: string): Layer {
  return tarLayer({ [`etc/${name}`]: `${name} ${randomBytes(8).toString('hex')}` });
}

/** `layer` declared with another (non-distributable) media type and download URLs. */
function foreign(layer: Layer, mediaType: string, urls: string[]): Layer {
  return { bytes: layer.bytes, desc: { ...layer.desc, mediaType, urls } };
}

/** Digests of chains, for comparing lists of remotes. */
const digests = (remotes: readonly (readonly Descriptor[])[]): string[][] => remotes.map((r) => r.map((d) => d.digest));

for (const kind of BACKENDS) {
  describe(`cache remotes on ${kind.name}`, () => {
    let t: TestCache;
    before(async () => {
      t = await openTestCache(kind);
    });
    after(async () => {
      await t.close();
    });

    /** A chain of `n` layers built through mounts, each with one file; returns the top and every layer. */
    async function buildChain(n: number): Promise<{ top: ImmutableRef; layers: ImmutableRef[] }> {
      const layers: ImmutableRef[] = [];
      for (let i = 0; i < n; i++) {
        const m = await t.cache.new(layers[i - 1]);
        await writeFiles(m, { [`layer${i}`]: `layer ${i} ${randomBytes(8).toString('hex')}` });
        layers.push(await m.commit());
      }
      return { top: layers[n - 1]!, layers };
    }

    async function releaseAll(refs: readonly ImmutableRef[]): Promise<void> {
      for (const r of [...refs].reverse()) if (!r.released) await r.release();
      await t.cache.prune([{ all: true }]);
    }

    /** A layer of 16 MiB of random bytes (long enough to kill an upload of it midway), not yet diffed. */
    async function bigLayer(): Promise<ImmutableRef> {
      const m = await t.cache.new();
      const mnt = await m.mount();
      await writeFile(join(mnt.target, 'random.bin'), randomBytes(16 << 20));
      await mnt.unmount();
      const layer = await m.commit();
      await layer.finalize();
      return layer;
    }

    /** Closes the cache, kills a worker process in the middle of `getRemote(remote)` on `id`, reopens. */
    async function killMidUpload(id: string, remote: RemoteOptions): Promise<void> {
      let lines: string[] = [];
      await t.reopen(async () => {
        lines = await runUntilPartial({ spec: t.tb.spec, cacheRoot: join(t.tb.dir, 'cache'), id, remote });
      });
      assert.deepEqual(lines, ['partial'], 'the worker was killed in the middle of its upload');
    }

    test('a diff a killed process left half-uploaded is collected at the next open', async () => {
      const layer = await bigLayer();
      const id = layer.id;
      await layer.release();
      await killMidUpload(id, { compression: 'gzip' });
      assert.deepEqual(await t.tb.backend.content.listStatuses(), [], 'no partial upload is left');
      const ref = await t.cache.get(id);
      const [gz] = await ref.getRemote({ compression: 'gzip' });
      assert.equal(sha256(await readBlob(t.tb.backend, gz!.digest)), gz!.digest);
      await releaseAll([ref]);
    });

    test('a conversion a killed process left half-uploaded starts again from zero', async () => {
      const layer = await bigLayer();
      const [gz] = await layer.getRemote({ compression: 'gzip' });
      const id = layer.id;
      await layer.release();
      await killMidUpload(id, { compression: 'zstd', force: true });
      const partial = await t.tb.backend.content.listStatuses();
      assert.ok(partial.some((s) => s.offset > 0), 'the killed conversion left a part-written upload behind');

      const ref = await t.cache.get(id);
      const [zst] = await ref.getRemote({ compression: 'zstd', force: true });
      assert.equal(zst!.mediaType, OCI_ZSTD);
      const blob = await readBlob(t.tb.backend, zst!.digest);
      assert.equal(sha256(blob), zst!.digest);
      assert.equal(sha256(unzstd(blob)), gz!.annotations![DIFF_ID], 'the variant holds the whole layer once');
      await releaseAll([ref]);
    });

    test('a lazy record fetches its blob through its descriptor handlers to convert it', async () => {
      const l0 = uniqueLayer('lazy0');
      const l1 = uniqueLayer('lazy1');
      const fetched: string[] = [];
      const descHandlers = providerFor([l0, l1], fetched);
      const r0 = await t.cache.getByBlob(l0.desc, undefined, { descHandlers });
      const r1 = await t.cache.getByBlob(l1.desc, r0, { descHandlers });
      assert.deepEqual(digests([await r1.getRemote({ compression: 'zstd' })]), [[l0.desc.digest, l1.desc.digest]]);
      assert.deepEqual(fetched, [], 'describing the existing blobs fetches nothing');

      const zst = await r1.getRemote({ compression: 'zstd', force: true });
      assert.deepEqual(fetched.sort(), [l0.desc.digest, l1.desc.digest].sort(), 'each blob fetched once');
      for (const [i, l] of [l0, l1].entries()) {
        assert.equal(zst[i]!.mediaType, OCI_ZSTD);
        assert.equal(sha256(unzstd(await readBlob(t.tb.backend, zst[i]!.digest))), l.desc.annotations![DIFF_ID]);
      }
      assert.equal(r1.info().extracted, false, 'converting does not extract');
      await releaseAll([r0, r1]);
    });

    test('a record whose snapshot is reused by chain ID fetches its own blob when converted', async () => {
      const gz = uniqueLayer('shared');
      const zst = zstdLayer(gz);
      const fetched: string[] = [];
      const descHandlers = providerFor([gz, zst], fetched);
      const first = await t.cache.getByBlob(gz.desc, undefined, { descHandlers });
      await first.extract();
      const second = await t.cache.getByBlob(zst.desc, undefined, { descHandlers });
      assert.notEqual(second.id, first.id, 'another blob chain, another record');
      assert.equal(second.info().snapshotID, first.info().snapshotID, 'the same chain ID reuses the snapshot');
      assert.equal(await readFileOf(second, 'etc/shared'), await readFileOf(first, 'etc/shared'));
      assert.deepEqual(fetched, [gz.desc.digest], 'extracting through the reused snapshot fetches nothing');

      const bare = await t.cache.get(second.id);
      await assert.rejects(bare.getRemote({ compression: 'gzip', force: true }), ErrNeedsRemoteProvider, 'without handlers it says what is missing');
      await bare.release();

      const [converted] = await second.getRemote({ compression: 'gzip', force: true });
      assert.deepEqual(fetched, [gz.desc.digest, zst.desc.digest], 'its own blob is fetched to convert it');
      assert.equal(converted!.mediaType, OCI_GZIP);
      assert.equal(converted!.annotations![DIFF_ID], gz.desc.annotations![DIFF_ID]);
      assert.equal(sha256(gunzipSync(await readBlob(t.tb.backend, converted!.digest))), gz.desc.annotations![DIFF_ID]);
      await releaseAll([first, second]);
    });

    test('createIfNeeded: false returns existing blobs or fails with ErrNoBlobs, changing nothing', async () => {
      const { top, layers } = await buildChain(2);
      await assert.rejects(top.getRemote({ createIfNeeded: false }), ErrNoBlobs);
      assert.equal(top.info().blob, undefined, 'no blob was made');
      await layers[0]!.getRemote();
      await assert.rejects(top.getRemote({ createIfNeeded: false }), (err: unknown) => {
        assert.ok(err instanceof ErrNoBlobs);
        assert.deepEqual(err.details.ids, [top.id], 'names the layer without a blob');
        return true;
      });
      assert.equal(top.info().blob, undefined);
      const made = await top.getRemote();
      assert.deepEqual(await top.getRemote({ createIfNeeded: false }), made, 'existing blobs are returned');
      assert.deepEqual(await layers[0]!.getRemote({ createIfNeeded: false }), made.slice(0, 1));

      const l0 = uniqueLayer('nocreate');
      const fetched: string[] = [];
      const lazy = await t.cache.getByBlob(l0.desc, undefined, { descHandlers: providerFor([l0], fetched) });
      assert.deepEqual(await lazy.getRemote({ createIfNeeded: false }), [{ ...l0.desc }], 'a lazy record has its blob');
      assert.deepEqual(fetched, []);
      await releaseAll([...layers, lazy]);
    });

    test('getRemotes({ all }): the main chain plus every combination of stored variants under the top', async () => {
      const { top, layers } = await buildChain(3);
      const gz = await top.getRemote({ compression: 'gzip' });
      const zst = await top.getRemote({ compression: 'zstd', force: true });
      const [g0, g1, g2] = gz.map((d) => d.digest);
      const [z0, z1, z2] = zst.map((d) => d.digest);

      assert.deepEqual(digests(await top.getRemotes({ compression: 'zstd' })), [[g0, g1, g2]], 'without all: the main chain');
      assert.deepEqual(digests(await top.getRemotes({ compression: 'zstd', force: true, all: true })), [[z0, z1, z2]], 'force: one chain');
      const all = await top.getRemotes({ compression: 'zstd', all: true });
      assert.deepEqual(digests(all), [
        [g0, g1, g2],
        [g0, g1, z2],
        [z0, g1, z2],
        [g0, z1, z2],
        [z0, z1, z2],
      ]);
      for (const remote of all.slice(1)) {
        assert.equal(remote[2]!.mediaType, OCI_ZSTD, 'the top blob has the requested compression');
        for (const [i, d] of remote.entries()) assert.equal(d.annotations![DIFF_ID], gz[i]!.annotations![DIFF_ID]);
      }
      const gzAll = digests(await top.getRemotes({ compression: 'gzip', all: true }));
      assert.deepEqual(gzAll, [
        [g0, g1, g2],
        [z0, g1, g2],
        [g0, z1, g2],
        [z0, z1, g2],
      ], 'the main chain is not repeated');
      assert.deepEqual(digests(await layers[0]!.getRemotes({ compression: 'zstd', all: true })), [[g0], [z0]]);
      assert.deepEqual(digests(await top.getRemotes({ compression: 'uncompressed', all: true })), [[g0, g1, g2]], 'no such top blob: the main chain');
      await releaseAll(layers);
    });

    test('non-distributable layers keep their media type and urls unless asked to convert', async () => {
      const oci = foreign(uniqueLayer('oci'), 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', ['https://example.com/oci']);
      const docker = foreign(uniqueLayer('docker'), 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', ['https://example.com/a', 'https://example.com/b']);
      const plain = uniqueLayer('plain');
      const descHandlers = providerFor([oci, docker, plain], []);
      const r0 = await t.cache.getByBlob(oci.desc, undefined, { descHandlers });
      const r1 = await t.cache.getByBlob(docker.desc, r0, { descHandlers });
      const r2 = await t.cache.getByBlob(plain.desc, r1, { descHandlers });
      assert.equal(await readFileOf(r2, 'etc/docker'), await readFileOf(r1, 'etc/docker'), 'foreign layers extract');

      const kept = await r2.getRemote();
      assert.deepEqual(kept.slice(0, 2), [oci.desc, docker.desc], 'media type and urls as imported');
      const forced = await r2.getRemote({ compression: 'zstd', force: true });
      assert.deepEqual(forced.slice(0, 2), [oci.desc, docker.desc], 'force leaves them alone: their urls serve that blob');
      assert.equal(forced[2]!.mediaType, OCI_ZSTD);

      const converted = await r2.getRemote({ convertNonDistributable: true });
      assert.deepEqual(
        converted.map((d) => [d.mediaType, d.digest, d.urls]),
        [
          [OCI_GZIP, oci.desc.digest, undefined],
          ['application/vnd.docker.image.rootfs.diff.tar.gzip', docker.desc.digest, undefined],
          [OCI_GZIP, plain.desc.digest, undefined],
        ],
      );
      const all = await r2.getRemote({ convertNonDistributable: true, compression: 'zstd', force: true });
      for (const [i, d] of all.entries()) {
        assert.equal(d.mediaType, OCI_ZSTD);
        assert.equal(d.urls, undefined);
        assert.equal(sha256(unzstd(await readBlob(t.tb.backend, d.digest))), kept[i]!.annotations![DIFF_ID]);
      }
      const remotes = await r2.getRemotes({ compression: 'zstd', all: true, convertNonDistributable: true });
      assert.equal(remotes.length, 5, 'the main chain and 2 × 2 combinations under the zstd top');
      assert.ok(remotes.flat().every((d) => d.urls === undefined && !/nondistributable|foreign/.test(d.mediaType)), 'all converted');
      const keptAll = await r2.getRemotes({ compression: 'zstd', all: true });
      assert.deepEqual(keptAll[0]!.slice(0, 2), [oci.desc, docker.desc]);
      assert.ok(keptAll.slice(1).some((r) => r[0]!.urls !== undefined), 'without conversion the foreign blobs keep their urls');
      await releaseAll([r0, r1, r2]);
    });
  });
}
