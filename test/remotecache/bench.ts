/**
 * Benchmark (JSON on stdout): a 5-step build shared through a local docker-registry. Machine A's
 * cold build + export, A's repeat export (nothing to upload), B's import, B's fully cached rebuild
 * from A's cache vs B's cold build without it; bytes sent and fetched for each.
 * Run: `node test/dist/remotecache/bench.js [MB of context, default 32]`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { Frontend } from '@buildcache/frontend';
import { RegistryClient } from '@buildcache/registry';
import { importCache } from '@buildcache/remotecache';
import { RegistryStore } from '@buildcache/remotecache/registry';
import { startFaultProxy, startRegistry } from '../support/registry.js';
import { hostRootfs } from '../frontend/fixtures.js';

const silent = pino({ level: 'silent' });
const mb = Number(process.argv[2] ?? 32);

const DOCKERFILE = `FROM scratch
COPY rootfs/ /
COPY data/ /data/
RUN cat /data/0/0.bin > /first.bin
COPY src/ /src/
RUN ls -R /src > /listing.txt
`;

const tmp = await mkdtemp(join(tmpdir(), 'bc-bench-remotecache-'));
const registry = await startRegistry();
const proxy = await startFaultProxy(registry.url);
const client = new RegistryClient({ logger: silent });
try {
  const ctx = join(tmp, 'ctx');
  await hostRootfs(join(ctx, 'rootfs'));
  // `mb` MiB of incompressible data in 64 KiB files, 100 per directory.
  const files = Math.max(1, Math.round((mb * 1024) / 64));
  for (let i = 0; i < files; i++) {
    const dir = join(ctx, 'data', String(Math.floor(i / 100)));
    if (i % 100 === 0) await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${i % 100}.bin`), randomBytes(64 * 1024));
  }
  await mkdir(join(ctx, 'src'));
  for (let i = 0; i < 50; i++) await writeFile(join(ctx, 'src', `f${i}.txt`), `file ${i}\n`);
  await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);

  const machine = async (name: string): Promise<{ frontend: Frontend; close(): Promise<void> }> => {
    const root = join(tmp, name);
    await mkdir(root, { recursive: true });
    const opened = await openCache({ root, logger: silent });
    const frontend = await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), logger: silent });
    return { frontend, close: () => opened.close() };
  };
  const time = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const t = process.hrtime.bigint();
    const r = await fn();
    return [r, Number(process.hrtime.bigint() - t) / 1e9];
  };
  const fetchedSince = (mark: number): number => proxy.log.slice(mark).filter((r) => r.method === 'GET' && /\/blobs\/sha256:/.test(r.path)).length;

  const store = new RegistryStore(client, `${proxy.host}/bench/cache:latest`);
  const a = await machine('a');
  const [coldA, coldASeconds] = await time(() => a.frontend.build({ context: ctx }));
  const [firstExport, exportSeconds] = await time(() => a.frontend.build({ context: ctx, cacheTo: [{ store, mode: 'max' }] }));
  const [repeatExport, repeatSeconds] = await time(() => a.frontend.build({ context: ctx, cacheTo: [{ store, mode: 'max' }] }));
  await a.close();

  const [imported, importSeconds] = await time(() => importCache(store));
  const b = await machine('b');
  const mark = proxy.log.length;
  const [cachedB, cachedBSeconds] = await time(() => b.frontend.build({ context: ctx, cacheFrom: [store] }));
  const blobsFetched = fetchedSince(mark);
  await b.close();
  const c = await machine('c');
  const [coldB, coldBSeconds] = await time(() => c.frontend.build({ context: ctx }));
  await c.close();

  const exported = firstExport.cacheExports[0]!;
  process.stdout.write(
    JSON.stringify(
      {
        bench: 'remote-cache',
        contextMiB: mb,
        steps: coldA.steps.length,
        layers: exported.layers.length,
        layerBytes: exported.layers.reduce((n, l) => n + l.size, 0),
        cold_build_s: coldASeconds,
        export_first: { seconds: exportSeconds, uploadedBlobs: exported.uploaded, uploadedBytes: exported.uploadedBytes, note: 'a fully cached build plus the export' },
        export_repeat: { seconds: repeatSeconds, uploadedBlobs: repeatExport.cacheExports[0]!.uploaded, uploadedBytes: repeatExport.cacheExports[0]!.uploadedBytes },
        import: { seconds: importSeconds, results: imported.size, warnings: imported.warnings.length },
        b_cached_rebuild: { seconds: cachedBSeconds, executed: cachedB.executed, blobGets: blobsFetched, sameDigest: cachedB.digest === coldA.digest },
        b_cold_build: { seconds: coldBSeconds, executed: coldB.executed },
        speedup: coldBSeconds / cachedBSeconds,
      },
      null,
      2,
    ) + '\n',
  );
} finally {
  await client.close();
  await proxy.stop();
  await registry.stop();
  await rm(tmp, { recursive: true, force: true });
}
