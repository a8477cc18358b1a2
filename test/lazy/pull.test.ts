/**
 * Lazy pulls from a real registry (Debian's docker-registry on loopback): `cat` of one file reads
 * only its chunks, whiteouts hide lower layers, a corrupt chunk fails before anything is applied,
 * and on every backend: lazy records from `pullImage`, extraction from fetched chunks, committed
 * verified blobs, and `getRemote({ compression: 'estargz' })` pushed and read back lazily.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ErrEstargzChunkDigest, ErrNotFound } from '@buildcache/errdefs';
import { EstargzReader, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, bufferRangeReader } from '@buildcache/estargz';
import { LayerManager, openRemoteImage, pullImage, pushImage } from '@buildcache/lazy';
import { RegistryClient } from '@buildcache/registry';
import { BACKENDS, type TestBackend } from '../support/backends.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { convertFile, noise, run, sourceTree } from '../estargz/fixtures.js';
import { pushLayers } from './fixtures.js';

const silent = pino({ level: 'silent' });

let dir: string;
let registry: TestRegistry;
let client: RegistryClient;
let esgz: string;
let gz: string;
let wh: string;
let corrupt: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-pull-'));
  registry = await startRegistry();
  client = new RegistryClient();
  const { tarGz } = await sourceTree(dir);
  const base = await convertFile(tarGz, { chunkSize: 32 * 1024 });
  esgz = `${registry.host}/lazy/esgz:v1`;
  gz = `${registry.host}/lazy/gz:v1`;
  wh = `${registry.host}/lazy/wh:v1`;
  corrupt = `${registry.host}/lazy/corrupt:v1`;
  await pushLayers(client, esgz, [{ bytes: base.blob, estargz: base.result }]);
  await pushLayers(client, gz, [{ bytes: await readFile(tarGz) }]);
  // an upper layer deleting etc/hello.txt and replacing bin/ (opaque) with one new file
  const up = join(dir, 'upper');
  await mkdir(join(up, 'etc'), { recursive: true });
  await mkdir(join(up, 'bin'), { recursive: true });
  await writeFile(join(up, 'etc', '.wh.hello.txt'), '');
  await writeFile(join(up, 'bin', '.wh..wh..opq'), '');
  await writeFile(join(up, 'bin', 'new'), 'new\n');
  await run('tar', ['-C', up, '-czf', join(dir, 'upper.tar.gz'), '.']);
  const upper = await convertFile(join(dir, 'upper.tar.gz'));
  await pushLayers(client, wh, [{ bytes: base.blob, estargz: base.result }, { bytes: upper.blob, estargz: upper.result }]);
  // the same layer with one byte of bin/big.bin's second chunk flipped (a registry serving other data under a valid TOC)
  const r = await EstargzReader.open(bufferRangeReader(base.blob), { tocDigest: base.result.tocDigest });
  const bad = Buffer.from(base.blob);
  const at = r.lookup('bin/big.bin')!.chunks[1]!.offset + 20;
  bad[at] = bad[at]! ^ 0xff;
  await pushLayers(client, corrupt, [{ bytes: bad, estargz: base.result, diffID: base.result.diffID }]);
});
after(async () => {
  await client?.close();
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('lazy remote images', () => {
  test('cat of one small file of an eStargz image fetches only its chunk; a gzip image is fetched whole', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm-cat'), background: false });
    const image = await openRemoteImage(client, manager, esgz);
    const layer = image.layers[0]!;
    assert.equal(layer.state().estargz, true);
    const toc = layer.state().bytesFetched; // the tail: footer and TOC (64 KiB at most)
    assert.equal((await image.readFile('/etc/hello.txt')).toString(), 'hello world\n');
    assert.deepEqual(await image.readdir('etc'), ['empty', 'hello.txt', 'link']);
    const st = layer.state();
    assert.ok(st.bytesFetched - toc < 1024, `${st.bytesFetched - toc} bytes fetched for the file`);
    assert.ok(st.requests <= 2, 'one request for footer and TOC, at most one for the chunk');
    image.release();

    const plain = await openRemoteImage(client, manager, gz);
    assert.equal(plain.layers[0]!.state().estargz, false);
    assert.equal((await plain.readFile('etc/hello.txt')).toString(), 'hello world\n');
    assert.ok((await plain.readFile('bin/big.bin')).equals(noise(300_000, 7)));
    assert.equal((await plain.stat('etc/link')).linkName, 'hello.txt');
    assert.equal(plain.layers[0]!.state().bytesFetched, plain.layers[0]!.blob.size);
    assert.equal(plain.layers[0]!.state().complete, true);
    plain.release();
    await manager.close();
  });

  test('whiteouts and opaque directories of an upper layer hide the lower files', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm-wh'), background: false });
    const image = await openRemoteImage(client, manager, wh);
    await assert.rejects(image.readFile('etc/hello.txt'), ErrNotFound);
    assert.deepEqual(await image.readdir('etc'), ['empty', 'link']);
    assert.deepEqual(await image.readdir('bin'), ['new']);
    await assert.rejects(image.stat('bin/big.bin'), ErrNotFound);
    assert.equal((await image.readFile('bin/new')).toString(), 'new\n');
    assert.equal((await image.stat('etc/empty')).size, 0);
    image.release();
    await manager.close();
  });

  test('a corrupt chunk fails the read and the extraction, before anything is applied', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm-bad'), background: false });
    const image = await openRemoteImage(client, manager, corrupt);
    assert.equal((await image.readFile('etc/hello.txt')).toString(), 'hello world\n');
    await assert.rejects(image.readFile('bin/big.bin'), ErrEstargzChunkDigest);
    image.release();
    const kind = BACKENDS[0]!;
    const tb = await kind.open();
    const cache = await CacheManager.open({ root: join(tb.dir, 'cache'), backend: tb.backend, logger: silent });
    try {
      const pulled = await pullImage(cache, client, manager, corrupt);
      await assert.rejects(pulled.refs[0]!.extract(), ErrEstargzChunkDigest);
      assert.equal(pulled.refs[0]!.info().extracted, false);
      await assert.rejects(tb.backend.snapshotter.stat(pulled.refs[0]!.info().snapshotID), ErrNotFound);
      await pulled.release();
    } finally {
      await cache.close();
      await manager.close();
      await tb.close();
    }
  });
});

for (const kind of BACKENDS) {
  describe(`lazy pull into the cache on ${kind.name}`, () => {
    let tb: TestBackend;
    let cache: CacheManager;
    let manager: LayerManager;
    before(async () => {
      tb = await kind.open();
      cache = await CacheManager.open({ root: join(tb.dir, 'cache'), backend: tb.backend, logger: silent });
      manager = new LayerManager({ dir: join(tb.dir, 'lazy'), background: false });
    });
    after(async () => {
      await cache.close();
      await manager.close();
      await tb.close();
    });

    for (const which of ['esgz', 'gz'] as const) {
      test(`${which}: lazy records; reads need no blob; extraction applies; commit stores the verified blob`, async () => {
        const ref = which === 'esgz' ? esgz : gz;
        const pulled = await pullImage(cache, client, manager, ref);
        const top = pulled.refs[pulled.refs.length - 1]!;
        assert.equal(top.info().extracted, false);
        assert.equal((await pulled.image.readFile('etc/hello.txt')).toString(), 'hello world\n');
        const digest = top.info().blob!;
        if (which === 'esgz') await assert.rejects(tb.backend.content.info(digest), ErrNotFound, 'nothing stored by a lazy read');
        const m = await top.mount();
        try {
          assert.equal(await readFile(join(m.target, 'etc', 'hello.txt'), 'utf8'), 'hello world\n');
          assert.ok((await readFile(join(m.target, 'bin', 'big.bin'))).equals(noise(300_000, 7)));
        } finally {
          await m.unmount();
        }
        assert.equal(top.info().extracted, true);
        await pulled.commit();
        assert.equal((await tb.backend.content.info(digest)).size, pulled.image.layers[0]!.blob.size);
        assert.equal(pulled.image.layers[0]!.state().complete, true);
        await pulled.release();
      });
    }

    test('getRemote({ compression: "estargz" }) gives annotated eStargz layers that pull lazily', async () => {
      const mut = await cache.new(undefined, { description: 'estargz export' });
      const m = await mut.mount();
      await mkdir(join(m.target, 'data'));
      await writeFile(join(m.target, 'data', 'small.txt'), 'small\n');
      await writeFile(join(m.target, 'data', 'large.bin'), noise(2 << 20, 11));
      await m.unmount();
      const ref = await mut.commit();
      const [desc] = await ref.getRemote({ compression: 'estargz' });
      assert.ok(desc!.annotations?.[TOC_DIGEST_ANNOTATION]?.startsWith('sha256:'));
      assert.match(desc!.annotations?.[UNCOMPRESSED_SIZE_ANNOTATION] ?? '', /^[0-9]+$/);
      const [again] = await ref.getRemote({ compression: 'estargz' });
      assert.equal(again!.digest, desc!.digest, 'converted once');
      const [gzDesc] = await ref.getRemote({ compression: 'gzip' });
      assert.notEqual(gzDesc!.digest, desc!.digest);
      assert.equal(gzDesc!.annotations?.[TOC_DIGEST_ANNOTATION], undefined);
      const target = `${registry.host}/lazy/export-${kind.name}:v1`;
      await pushImage(client, tb.backend.content, ref, target, { compression: 'estargz' });
      const image = await openRemoteImage(client, manager, target);
      const toc = image.layers[0]!.state().bytesFetched;
      assert.equal((await image.readFile('data/small.txt')).toString(), 'small\n');
      const st = image.layers[0]!.state();
      assert.ok(st.estargz && st.bytesFetched < desc!.size / 2 && st.bytesFetched - toc < 1024, `${st.bytesFetched} of ${desc!.size}`);
      image.release();
      await ref.release();
    });
  });
}
