/**
 * The remote cache between two machines (two cache roots) through a real registry (Debian's
 * docker-registry on loopback, behind a fault proxy that logs every request) and through an OCI
 * layout directory: B rebuilds A's project with every step CACHED and no layer downloaded; one
 * changed file reruns only the steps after it; mode=min still hits the final result; a registry
 * that goes away mid-export fails the export with a typed error and pushes no manifest; caches
 * that are malformed or lie are ignored with a warning and the build goes on.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCache, type OpenCache } from '@buildcache/cache';
import { BuildcacheError, ErrNotFound } from '@buildcache/errdefs';
import { Frontend, type BuildRequest, type BuildResult } from '@buildcache/frontend';
import { RegistryClient } from '@buildcache/registry';
import { importCache, LocalStore, type CacheStore } from '@buildcache/remotecache';
import { RegistryStore } from '@buildcache/remotecache/registry';
import { startFaultProxy, startRegistry, type FaultProxy, type TestRegistry } from '../support/registry.js';
import { countingRuntime, hostRootfs, readRecordFile } from '../frontend/fixtures.js';

const silent = pino({ level: 'silent' });

const DOCKERFILE = `FROM scratch
COPY rootfs/ /
COPY src/a.txt /app/a.txt
RUN cat /app/a.txt > /app/out.txt
COPY src/b.txt /app/b.txt
RUN cat /app/out.txt /app/b.txt > /app/all.txt
`;

let tmp: string;
let rootfs: string;
let registry: TestRegistry;
let proxy: FaultProxy;
let client: RegistryClient;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-remotecache-'));
  rootfs = join(tmp, 'rootfs');
  await hostRootfs(rootfs);
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  client = new RegistryClient({ logger: silent, retries: 1, retryDelayMs: 10 });
});
after(async () => {
  await client?.close();
  await proxy?.stop();
  await registry?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** A build context with the rootfs, the Dockerfile and `files`. */
async function project(name: string, files: Record<string, string>, dockerfile = DOCKERFILE): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(join(dir, 'src'), { recursive: true });
  await cp(rootfs, join(dir, 'rootfs'), { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  for (const [path, body] of Object.entries(files)) await writeFile(join(dir, path), body);
  return dir;
}

/** One machine: its own cache root, frontend and counted runtime. */
interface Machine {
  opened: OpenCache;
  frontend: Frontend;
  runs(): Promise<number>;
  build(req: BuildRequest): Promise<BuildResult>;
  /** Reads a file of a record (`from`: the cache whose blobs a lazy record needs). */
  read(record: string, path: string, from?: CacheStore): Promise<string>;
  close(): Promise<void>;
}

async function machine(name: string): Promise<Machine> {
  const root = join(tmp, name);
  await mkdir(root, { recursive: true });
  const runtime = await countingRuntime(await mkdtemp(join(tmp, `${name}-runc-`)));
  const opened = await openCache({ root, logger: silent });
  const frontend = await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), runtime: runtime.path, logger: silent });
  return {
    opened,
    frontend,
    runs: () => runtime.runs(),
    build: (req) => frontend.build(req),
    async read(record, path, from) {
      const handlers = from ? (await importCache(from)).handlers : undefined;
      return readRecordFile(opened.cache, record, path, handlers ? { descHandlers: handlers } : {});
    },
    close: () => opened.close(),
  };
}

/** Layer blob GETs the proxy has seen since `from`. */
const blobGets = (from: number): number => proxy.log.slice(from).filter((r) => r.method === 'GET' && /\/blobs\/sha256:/.test(r.path) && r.status === 200).length;

describe('remote cache through a registry', () => {
  let a: Machine;
  let b: Machine;
  const ref = (tag: string): string => `${proxy.host}/cache/app:${tag}`;

  before(async () => {
    a = await machine('a');
    b = await machine('b');
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  test('B rebuilds A’s exported build (mode=max) with every step CACHED, no runc run, no layer fetched, the same image', async () => {
    const ctx = await project('p1', { 'src/a.txt': 'A', 'src/b.txt': 'B' });
    const first = await a.build({ context: ctx, cacheTo: [{ store: new RegistryStore(client, ref('max')), mode: 'max' }] });
    assert.equal(first.executed, 5);
    assert.equal(first.cacheExports[0]!.layers.length, 5);
    assert.ok(first.cacheExports[0]!.uploaded >= 5);

    const mark = proxy.log.length;
    const ctxB = await project('p1-b', { 'src/a.txt': 'A', 'src/b.txt': 'B' });
    const second = await b.build({ context: ctxB, cacheFrom: [new RegistryStore(client, ref('max'))] });
    assert.deepEqual(second.steps.map((s) => s.cached), [true, true, true, true, true]);
    assert.equal(second.executed, 0);
    assert.equal(await b.runs(), 0);
    assert.equal(second.digest, first.digest, 'same image digest as A');
    assert.equal(blobGets(mark), 1, 'only the cache description is downloaded (manifests are not blobs)');

    // Mounting the result fetches its layers, and they hold A's files.
    assert.equal(await b.read(second.record!, 'app/all.txt', new RegistryStore(client, ref('max'))), 'AB');
    assert.ok(blobGets(mark) > 1);
  });

  test('A changes one file and exports again: B reruns only the steps from that file on', async () => {
    const ctx = await project('p2', { 'src/a.txt': 'A', 'src/b.txt': 'B2' });
    const again = await a.build({ context: ctx, cacheTo: [{ store: new RegistryStore(client, ref('max')), mode: 'max' }] });
    assert.deepEqual(again.steps.map((s) => s.cached), [true, true, true, false, false]);
    assert.equal(again.cacheExports[0]!.uploaded, 2, 'only the two new layers are uploaded');

    const before = await b.runs();
    const ctxB = await project('p2-b', { 'src/a.txt': 'A', 'src/b.txt': 'B2' });
    const rebuilt = await b.build({ context: ctxB, cacheFrom: [new RegistryStore(client, ref('max'))] });
    assert.deepEqual(rebuilt.steps.map((s) => s.cached), [true, true, true, true, true], 'the new results come from A too');
    assert.equal(await b.runs(), before);
    assert.equal(rebuilt.digest, again.digest);

    // Without the cache, B's own change reruns from the changed COPY only (B's earlier build made the rest).
    const ctxB3 = await project('p3-b', { 'src/a.txt': 'A', 'src/b.txt': 'B3' });
    const local = await b.build({ context: ctxB3 });
    assert.deepEqual(local.steps.map((s) => s.cached), [true, true, true, false, false]);
    assert.equal(await b.read(local.record!, 'app/all.txt'), 'AB3');
  });

  test('mode=min exports the final result only, and an empty machine still hits it', async () => {
    const ctx = await project('p4', { 'src/a.txt': 'min', 'src/b.txt': 'imal' });
    const built = await a.build({ context: ctx, cacheTo: [{ store: new RegistryStore(client, ref('min')), mode: 'min' }] });
    assert.equal(built.cacheExports[0]!.layers.length, 5, 'the final chain has five layers');
    const c = await machine('c');
    try {
      const ctxC = await project('p4-c', { 'src/a.txt': 'min', 'src/b.txt': 'imal' });
      const hit = await c.build({ context: ctxC, cacheFrom: [new RegistryStore(client, ref('min'))] });
      assert.equal(hit.executed, 0);
      assert.equal(hit.digest, built.digest);
      assert.equal(await c.read(hit.record!, 'app/all.txt', new RegistryStore(client, ref('min'))), 'minimal');
    } finally {
      await c.close();
    }
  });

  test('a registry that goes away mid-export: a typed error, no manifest pushed, the local cache intact', async () => {
    const ctx = await project('p5', { 'src/a.txt': 'down', 'src/b.txt': 'time' });
    proxy.inject({ method: 'PUT', path: /\/blobs\/uploads\//, times: 1000, fault: { kind: 'reset' } });
    proxy.inject({ method: 'PATCH', path: /\/blobs\/uploads\//, times: 1000, fault: { kind: 'reset' } });
    try {
      await assert.rejects(
        a.build({ context: ctx, cacheTo: [{ store: new RegistryStore(client, ref('down')), mode: 'max' }] }),
        (err: unknown) => err instanceof BuildcacheError && /registry|unavailable|connection/i.test(err.message),
      );
    } finally {
      proxy.clear();
    }
    await assert.rejects(client.getManifest(ref('down')), ErrNotFound, 'no manifest names the partial upload');
    // The build itself is cached locally: the same build again runs nothing.
    const again = await a.build({ context: ctx });
    assert.equal(again.executed, 0);
  });

  test('ignore-error=true turns an export failure into a warning', async () => {
    const ctx = await project('p6', { 'src/a.txt': 'ign', 'src/b.txt': 'ore' });
    proxy.inject({ method: 'PUT', times: 1000, fault: { kind: 'status', status: 503 } });
    proxy.inject({ method: 'POST', times: 1000, fault: { kind: 'status', status: 503 } });
    try {
      const built = await a.build({ context: ctx, cacheTo: [{ store: new RegistryStore(client, ref('ignored')), ignoreError: true }] });
      assert.ok(built.warnings.some((w) => w.startsWith('cache export to registry')), built.warnings.join('\n'));
    } finally {
      proxy.clear();
    }
  });
});

describe('remote cache in an OCI layout directory', () => {
  let a: Machine;
  let b: Machine;
  let dir: string;

  before(async () => {
    a = await machine('la');
    b = await machine('lb');
    dir = join(tmp, 'layout');
    const ctx = await project('l1', { 'src/a.txt': 'L', 'src/b.txt': 'ocal' });
    await a.build({ context: ctx, cacheTo: [{ store: new LocalStore(dir), mode: 'max' }] });
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  test('type=local: an OCI layout with index.json tagged latest; B hits every step from it', async () => {
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
    assert.equal(index.manifests[0]!.annotations['org.opencontainers.image.ref.name'], 'latest');
    const ctx = await project('l1-b', { 'src/a.txt': 'L', 'src/b.txt': 'ocal' });
    const hit = await b.build({ context: ctx, cacheFrom: [new LocalStore(dir)] });
    assert.equal(hit.executed, 0);
    assert.equal(await b.read(hit.record!, 'app/all.txt', new LocalStore(dir)), 'Local');
  });

  /** A copy of the layout with `edit` applied to its cache description (config) JSON. */
  async function tampered(name: string, edit: (cfg: { layers: { blob: string; parent: number }[]; records: { inputs?: { link: number }[][] }[] }) => void): Promise<string> {
    const copy = join(tmp, name);
    await cp(dir, copy, { recursive: true });
    const index = JSON.parse(await readFile(join(copy, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifestPath = join(copy, 'blobs/sha256', index.manifests[0]!.digest.slice(7));
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { config: { digest: string; size: number } };
    const cfgPath = join(copy, 'blobs/sha256', manifest.config.digest.slice(7));
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Parameters<typeof edit>[0];
    edit(cfg);
    // Rewrite in place under the old digest: the store then reports a digest mismatch unless the
    // edit is caught first by parsing — either way the cache must be ignored, not fail the build.
    await writeFile(cfgPath, JSON.stringify(cfg));
    return copy;
  }

  test('malformed or lying caches are ignored with a warning and the build runs its steps', async () => {
    const ctx = await project('l2', { 'src/a.txt': 'L', 'src/b.txt': 'ocal' });
    const loop = await tampered('loop', (cfg) => {
      const r = cfg.records.find((x) => x.inputs?.length);
      r!.inputs![0] = [{ link: cfg.records.indexOf(r!) } as { link: number }];
    });
    const notJson = join(tmp, 'notjson');
    await cp(dir, notJson, { recursive: true });
    await writeFile(join(notJson, 'index.json'), '{"manifests": [');
    const missingBlob = join(tmp, 'missing');
    await cp(dir, missingBlob, { recursive: true });
    const layers = (await readdir(join(missingBlob, 'blobs/sha256'))).filter((f) => !f.endsWith('.tmp'));
    const c = await machine('lc');
    try {
      // Remove the biggest blob (a layer: the rootfs COPY), so results on it are skipped.
      const { stat } = await import('node:fs/promises');
      const sizes = await Promise.all(layers.map(async (f) => [f, (await stat(join(missingBlob, 'blobs/sha256', f))).size] as const));
      const biggest = sizes.sort((x, y) => y[1] - x[1])[0]![0];
      await rm(join(missingBlob, 'blobs/sha256', biggest));
      const built = await c.build({ context: ctx, cacheFrom: [new LocalStore(loop), new LocalStore(notJson), new LocalStore(missingBlob)] });
      assert.equal(built.executed, 5, 'no usable result');
      const text = built.warnings.join('\n');
      assert.match(text, /local .*loop.*(loop|digest)/);
      assert.match(text, /local .*notjson.*cannot read it/);
      assert.match(text, /local .*missing.*not in the store/);
      assert.equal(await c.read(built.record!, 'app/all.txt'), 'Local');
    } finally {
      await c.close();
    }
  });

  test('a result whose layer does not unpack to its claimed diffID is dropped with a warning; the steps run', async () => {
    const lie = join(tmp, 'lie');
    await cp(dir, lie, { recursive: true });
    // Swap the diffID annotations of the first two layers of the manifest (each now claims the other's).
    const index = JSON.parse(await readFile(join(lie, 'index.json'), 'utf8')) as { manifests: { digest: string; size: number; annotations: Record<string, string> }[] };
    const mPath = join(lie, 'blobs/sha256', index.manifests[0]!.digest.slice(7));
    const manifest = JSON.parse(await readFile(mPath, 'utf8')) as { layers: { annotations: Record<string, string> }[] };
    const key = 'containerd.io/uncompressed';
    const [x, y] = [manifest.layers[0]!.annotations[key], manifest.layers[1]!.annotations[key]];
    manifest.layers[0]!.annotations[key] = y!;
    manifest.layers[1]!.annotations[key] = x!;
    const bytes = Buffer.from(JSON.stringify(manifest));
    const { createHash } = await import('node:crypto');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await writeFile(join(lie, 'blobs/sha256', digest.slice(7)), bytes);
    index.manifests[0] = { ...index.manifests[0]!, digest, size: bytes.length };
    await writeFile(join(lie, 'index.json'), JSON.stringify(index));

    const d = await machine('ld');
    try {
      // One more step than A built, so the deepest hit must be unpacked to run on.
      const ctx = await project('l3', { 'src/a.txt': 'L', 'src/b.txt': 'ocal' }, DOCKERFILE + 'RUN cat /app/all.txt /app/all.txt > /app/twice.txt\n');
      const built = await d.build({ context: ctx, cacheFrom: [new LocalStore(lie)] });
      assert.ok(built.warnings.some((w) => /cannot be used/.test(w)), built.warnings.join('\n'));
      assert.equal(built.executed, 6);
      assert.equal(await d.read(built.record!, 'app/twice.txt'), 'LocalLocal');
    } finally {
      await d.close();
    }
  });
});
