/**
 * Lazy pull benchmark (JSON): a Debian rootfs layer (debootstrap bookworm minbase cached by
 * debian-rootfs.ts, else a tar of /usr/share) pushed to a local docker-registry as eStargz and as
 * gzip; for each: time and bytes of a first file read (`cat` of one small file) against a full pull
 * (fetch, verify, store) + extract, and the full fetch's throughput against `curl` of the same blob.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend } from '@buildcache/cache';
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, convertToEstargz } from '@buildcache/estargz';
import { LayerManager, openRemoteImage, pullImage } from '@buildcache/lazy';
import { MediaType, RegistryClient, type Descriptor } from '@buildcache/registry';
import { startRegistry } from '../support/registry.js';

const execFileP = promisify(execFile);
const CACHE = process.env.BENCH_CACHE ?? join(tmpdir(), 'buildcache-bench-cache');
const DEBIAN = join(CACHE, 'debian-bookworm-minbase.tar.gz');
const silent = pino({ level: 'silent' });
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function fileDigest(path: string, gunzip = false): Promise<string> {
  const hash = createHash('sha256');
  const src = createReadStream(path);
  for await (const c of gunzip ? src.pipe(createGunzip()) : src) hash.update(c as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, (performance.now() - t0) / 1000];
}

/** The layer: the cached debootstrap rootfs, else a tar.gz of /usr/share made once. */
async function layerSource(dir: string): Promise<{ path: string; what: string; file: string }> {
  if (await stat(DEBIAN).then(() => true, () => false)) return { path: DEBIAN, what: 'debootstrap bookworm minbase rootfs (cached)', file: 'etc/debian_version' };
  const path = join(dir, 'usr-share.tar.gz');
  await execFileP('tar', ['-C', '/usr', '-czf', path, 'share']);
  return { path, what: 'tar of /usr/share (debootstrap rootfs not cached)', file: 'share/base-files/motd' };
}

async function push(client: RegistryClient, ref: string, blobPath: string, diffID: string, annotations?: Record<string, string>): Promise<Descriptor> {
  const bytes = await readFile(blobPath);
  const layer: Descriptor = { mediaType: MediaType.OCI_LAYER_GZIP, digest: sha(bytes), size: bytes.length, ...(annotations ? { annotations } : {}) };
  await client.pushBlob(ref, layer, bytes);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffID] } }));
  const configDesc = { mediaType: MediaType.OCI_CONFIG, digest: sha(config), size: config.length };
  await client.pushBlob(ref, configDesc, config);
  await client.pushManifest(ref, JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: configDesc, layers: [layer] }), MediaType.OCI_MANIFEST);
  return layer;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-lazy-'));
  const registry = await startRegistry();
  const client = new RegistryClient();
  try {
    const src = await layerSource(dir);
    const esgzPath = join(dir, 'layer.esgz');
    const out = await import('node:fs').then((fs) => fs.createWriteStream(esgzPath));
    const [conv, convertSeconds] = await timed(() => convertToEstargz(createReadStream(src.path), (c) => new Promise((ok, fail) => out.write(c, (e) => (e ? fail(e) : ok())))));
    await new Promise((ok) => out.end(ok));
    const images = {
      estargz: { ref: `${registry.host}/bench/esgz:v1`, layer: await push(client, `${registry.host}/bench/esgz:v1`, esgzPath, conv.diffID, { [TOC_DIGEST_ANNOTATION]: conv.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(conv.uncompressedSize) }) },
      gzip: { ref: `${registry.host}/bench/gz:v1`, layer: await push(client, `${registry.host}/bench/gz:v1`, src.path, await fileDigest(src.path, true)) },
    };
    const results: Record<string, unknown> = {};
    for (const [name, img] of Object.entries(images)) {
      // first read: a fresh manager, nothing local
      const m1 = new LayerManager({ dir: join(dir, `m1-${name}`), background: false });
      const [content, firstReadSeconds] = await timed(async () => {
        const image = await openRemoteImage(client, m1, img.ref);
        const data = await image.readFile(src.file);
        image.release();
        return { data, bytes: image.layers[0]!.state().bytesFetched, requests: image.layers[0]!.state().requests };
      });
      await m1.close();
      // full pull: fetch + verify + store, then extract, into a fresh embedded cache
      const backend = await openEmbeddedBackend({ root: join(dir, `backend-${name}`), snapshotter: 'overlayfs', logger: silent });
      const cache = await CacheManager.open({ root: join(dir, `cache-${name}`), backend, logger: silent });
      const m2 = new LayerManager({ dir: join(dir, `m2-${name}`), background: false, backgroundConcurrency: 4 });
      const [pulled, fetchSeconds] = await timed(async () => {
        const p = await pullImage(cache, client, m2, img.ref);
        await p.commit();
        return p;
      });
      const [, extractSeconds] = await timed(() => pulled.refs[0]!.extract());
      await pulled.release();
      await m2.close();
      await cache.close();
      await backend.close();
      // curl of the same blob
      const { stdout } = await execFileP('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', `${registry.url}/v2/${img.ref.split('/').slice(1).join('/').split(':')[0]}/blobs/${img.layer.digest}`]);
      const [curlBytes, curlSeconds] = stdout.trim().split(' ').map(Number) as [number, number];
      const full = fetchSeconds + extractSeconds;
      results[name] = {
        blobBytes: img.layer.size,
        firstRead: { file: src.file, fileBytes: content.data.length, seconds: +firstReadSeconds.toFixed(3), bytesFetched: content.bytes, rangeRequests: content.requests },
        fullPull: { fetchVerifyStoreSeconds: +fetchSeconds.toFixed(3), extractSeconds: +extractSeconds.toFixed(3), totalSeconds: +full.toFixed(3), MBps: +(img.layer.size / fetchSeconds / 1e6).toFixed(1) },
        curl: { bytes: curlBytes, seconds: curlSeconds, MBps: +(curlBytes / curlSeconds / 1e6).toFixed(1) },
        firstReadVsFullPull: { time: +(firstReadSeconds / full).toFixed(4), bytes: +(content.bytes / img.layer.size).toFixed(4) },
      };
    }
    console.log(JSON.stringify({ layer: src.what, convertSeconds: +convertSeconds.toFixed(2), estargzOverhead: +(conv.size / images.gzip.layer.size).toFixed(3), results, goal: 'first read < 5% of full pull time and bytes' }, null, 2));
  } finally {
    await client.close();
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
