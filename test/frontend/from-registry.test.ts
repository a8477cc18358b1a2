/**
 * `FROM <image in a registry>` (Debian's docker-registry on loopback): the platform's manifest is
 * picked from the index, the layers are recorded lazily (a build that mounts nothing fetches no layer
 * byte), RUN with real runc sees the image's files and config; the FROM step's key is the manifest
 * digest, so a second build is all CACHED and a moved tag reruns; an unreachable registry is a typed
 * error. `buildcache build -t` on such a base records the image in the image store: `images` lists
 * it, `export` gives an archive containerd imports and runs, and `FROM NAME` builds on it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { openCache, type OpenCache } from '@buildcache/cache';
import { ErrUnavailable } from '@buildcache/errdefs';
import { Frontend, createProgress, type BuildResult } from '@buildcache/frontend';
import { LayerManager } from '@buildcache/lazy';
import { MediaType, RegistryClient } from '@buildcache/registry';
import { containerdAddress } from '../harness/containerd.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { cli, countingRuntime, hostRootfs, readRecordFile } from './fixtures.js';

const run = promisify(execFile);
const silent = pino({ level: 'silent' });
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let tmp: string;
let registry: TestRegistry;
let client: RegistryClient;
let opened: OpenCache;
let runtime: Awaited<ReturnType<typeof countingRuntime>>;
let ref: string;
const managers: LayerManager[] = [];

/** Pushes a one-layer image of the test rootfs (with `/etc/image-marker` = `marker`) to `target`, behind an index for amd64 and arm64. */
async function pushImage(target: string, marker: string): Promise<void> {
  const rootfs = join(tmp, `rootfs-${marker}`);
  await hostRootfs(rootfs);
  await mkdir(join(rootfs, 'srv'));
  await writeFile(join(rootfs, 'etc/image-marker'), marker);
  const tar = (await run('tar', ['-C', rootfs, '--sort=name', '-cf', '-', '.'], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
  const layer = gzipSync(tar);
  const layerDesc = { mediaType: MediaType.OCI_LAYER_GZIP, digest: sha(layer), size: layer.length };
  await client.pushBlob(target, layerDesc, layer);
  const manifests = [];
  for (const architecture of ['amd64', 'arm64']) {
    const config = Buffer.from(JSON.stringify({
      architecture, os: 'linux',
      config: { Env: ['PATH=/bin:/usr/bin', `GREETING=hello-${architecture}`], WorkingDir: '/srv', Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha(tar)] },
    }));
    const configDesc = { mediaType: MediaType.OCI_CONFIG, digest: sha(config), size: config.length };
    await client.pushBlob(target, configDesc, config);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: configDesc, layers: [layerDesc] }));
    const desc = await client.pushManifest(`${target.slice(0, target.lastIndexOf(':'))}@${sha(manifest)}`, manifest, MediaType.OCI_MANIFEST);
    manifests.push({ ...desc, mediaType: MediaType.OCI_MANIFEST, platform: { architecture, os: 'linux' } });
  }
  await client.pushManifest(target, JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests }), MediaType.OCI_INDEX);
}

/** A frontend over the test cache whose registry access uses a new layer manager (returned, to read what it fetched). */
async function frontendOf(): Promise<{ frontend: Frontend; layers: LayerManager }> {
  const layers = new LayerManager({ dir: join(tmp, `lazy-${managers.length}`), background: false, graceMs: 0 });
  managers.push(layers);
  const root = join(tmp, 'cache');
  const frontend = await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), runtime: runtime.path, logger: silent, registry: { client, layers } });
  return { frontend, layers };
}

/** Layer bytes a manager fetched so far. */
const fetched = (layers: LayerManager): number => layers.state().reduce((n, s) => n + s.bytesFetched, 0);

async function project(name: string, dockerfile: string): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

const quiet = (): ReturnType<typeof createProgress> => createProgress('quiet', process.stderr);
const readFileOf = (r: BuildResult, path: string): Promise<string> => readRecordFile(opened.cache, r.record!, path);

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-from-registry-'));
  registry = await startRegistry();
  client = new RegistryClient({ logger: silent, retries: 1, retryDelayMs: 50 });
  ref = `${registry.host}/base/shell:v1`;
  await pushImage(ref, 'v1');
  await mkdir(join(tmp, 'cache'));
  runtime = await countingRuntime(tmp);
  opened = await openCache({ root: join(tmp, 'cache'), logger: silent });
});

after(async () => {
  for (const m of managers) await m.close();
  await opened?.close();
  await client?.close();
  await registry?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const RUN_DOCKERFILE = (): string => `FROM ${ref}\nRUN echo "$GREETING $(pwd) $(cat /etc/image-marker)" > out.txt\n`;

test('FROM a registry image: the platform manifest of its index, RUN with runc on its files and config; a rebuild is all CACHED and fetches no layer byte', async () => {
  const ctx = await project('p1', RUN_DOCKERFILE());
  const { frontend, layers } = await frontendOf();
  const first = await frontend.build({ context: ctx, progress: quiet() });
  assert.deepEqual(first.steps.map((s) => s.cached), [false]);
  assert.ok(fetched(layers) > 0, 'the RUN mounted the base: its layer was fetched');
  assert.equal(await runtime.runs(), 1);
  assert.equal(await readFileOf(first, 'srv/out.txt'), 'hello-amd64 /srv v1\n');
  const config = JSON.parse(first.image.configBytes.toString('utf8')) as { config: { Cmd: string[]; WorkingDir: string } };
  assert.deepEqual([config.config.Cmd, config.config.WorkingDir], [['/bin/sh'], '/srv']);
  assert.equal(first.image.layers.length, 2, "the registry image's layer and the RUN's");

  const again = await frontendOf();
  const second = await again.frontend.build({ context: ctx, progress: quiet() });
  assert.deepEqual(second.steps.map((s) => s.cached), [true]);
  assert.equal(second.digest, first.digest);
  assert.equal(await runtime.runs(), 1, 'no runc run on the cached build');
  assert.equal(fetched(again.layers), 0, 'a cached build resolves the tag and fetches no layer');

  const configOnly = await project('p-config', `FROM ${ref}\nENV EXTRA=1\nCMD ["/bin/cat", "/etc/image-marker"]\n`);
  const fresh = await frontendOf();
  const meta = await fresh.frontend.build({ context: configOnly, progress: quiet() });
  assert.equal(meta.image.layers.length, 1);
  assert.equal(fetched(fresh.layers), 0, 'a base no step mounts is never fetched');
});

test('a moved tag reruns the steps on the new image; the same digest again is CACHED', async () => {
  const ctx = await project('p-moved', RUN_DOCKERFILE());
  const { frontend } = await frontendOf();
  const before = await frontend.build({ context: ctx, progress: quiet() });
  await pushImage(ref, 'v2');
  const moved = await frontend.build({ context: ctx, progress: quiet() });
  assert.deepEqual(moved.steps.map((s) => s.cached), [false]);
  assert.notEqual(moved.digest, before.digest);
  assert.equal(await readFileOf(moved, 'srv/out.txt'), 'hello-amd64 /srv v2\n');
  const again = await frontend.build({ context: ctx, progress: quiet() });
  assert.deepEqual(again.steps.map((s) => s.cached), [true]);
});

test('buildcache build -t FROM a registry image: images lists it, its export runs in containerd, FROM the name builds on it', async () => {
  const root = join(tmp, 'root-cli');
  const env = { BUILDCACHE_RUNC: runtime.path };
  const ctx = await project('p-cli', `FROM ${ref}\nRUN echo built-on-a-registry-base > /srv/msg\nCMD ["/bin/cat", "/srv/msg"]\n`);
  const name = `bc-reg-${randomBytes(4).toString('hex')}`;
  const built = await cli(['--root', root, 'build', '--progress', 'plain', '-t', `${name}:v1`, ctx], env);
  assert.equal(built.code, 0, built.stderr);
  assert.match(built.stderr, new RegExp(`\\[internal\\] load metadata for ${ref.replaceAll('.', '\\.')}`));
  const listed = await cli(['--root', root, 'images', '--format', 'json']);
  assert.equal(listed.code, 0, listed.stderr);
  const images = JSON.parse(listed.stdout) as { names: string[]; layers: number }[];
  assert.deepEqual(images.map((i) => [i.names, i.layers]), [[[`${name}:v1`], 2]]);

  const archive = join(tmp, 'exported.tar');
  const exported = await cli(['--root', root, 'export', `${name}:v1`, '-o', archive]);
  assert.equal(exported.code, 0, exported.stderr);
  const ns = `bctest-${randomBytes(5).toString('hex')}`;
  const ctr = (...args: string[]): Promise<{ stdout: string }> => run('ctr', ['-a', containerdAddress(), '-n', ns, ...args]);
  const id = `buildcache-reg-${randomBytes(4).toString('hex')}`;
  const full = `docker.io/library/${name}:v1`;
  try {
    await ctr('images', 'import', archive);
    assert.equal((await ctr('run', '--rm', '--runc-root', join(tmp, 'ctr-runc'), full, id)).stdout, 'built-on-a-registry-base\n');
  } finally {
    await ctr('containers', 'rm', id).catch(() => undefined);
    await ctr('images', 'rm', full).catch(() => undefined);
  }

  const app = await project('p-cli-app', `FROM ${name}:v1\nRUN echo "app sees $(cat /srv/msg)"\n`);
  const onTop = await cli(['--root', root, 'build', '--progress', 'plain', app], env);
  assert.equal(onTop.code, 0, onTop.stderr);
  assert.match(onTop.stderr, /app sees built-on-a-registry-base/);
});

test('the registry unreachable: even an all-cached build fails with ErrUnavailable (the tag is resolved on every build)', async () => {
  const ctx = await project('p-down', RUN_DOCKERFILE());
  const { frontend } = await frontendOf();
  const cached = await frontend.build({ context: ctx, progress: quiet() });
  assert.deepEqual(cached.steps.map((s) => s.cached), [true]);
  await registry.stop();
  const runs = await runtime.runs();
  await assert.rejects(frontend.build({ context: ctx, progress: quiet() }), (err: Error) => {
    assert.ok(err instanceof ErrUnavailable, String(err));
    assert.match(err.message, /cannot be reached.*resolved on every build/);
    return true;
  });
  assert.equal(await runtime.runs(), runs);
});
