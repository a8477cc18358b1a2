/**
 * Benchmark of the metadata store; prints one JSON object. Figures: commit throughput
 * (sequential and concurrent, with and without fsync), all() over 100k records of ~20 keys,
 * exact-search latency at 100k, and size on disk.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MetadataStore, type StorageItem } from '../src/index.js';

setFlagsFromString('--expose-gc');
/** Full garbage collection, so heap figures count retained memory only. */
const gc = runInNewContext('gc') as () => void;

const COMMITS = 10_000;
const RECORDS = 100_000;
const SEARCHES = 2_000;

/** Sets the ~20 keys a cache record has. */
function fillRecord(item: StorageItem, i: number, round = 0): void {
  const digest = `sha256:${(i * 2654435761 % 2 ** 32).toString(16).padStart(8, '0')}${'0'.repeat(56)}`;
  item.set('snapshot.size', 1024 * i + round);
  item.set('snapshot.committed', true);
  item.set('cache.createdAt', 1_700_000_000_000 + i);
  item.set('cache.lastUsedAt', 1_700_000_000_000 + i + round);
  item.set('cache.usageCount', round);
  item.set('cache.recordType', 'regular');
  item.set('cache.description', `[${i % 7}/9] RUN npm ci --omit=dev # step ${i}`);
  item.set('cache.parent', i > 0 ? `rec${i - 1}` : null);
  item.set('cache.diffID', digest);
  item.set('cache.blob', digest);
  item.set('cache.mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip');
  item.set('cache.blobSize', 4096 + i);
  item.set('cache.chainID', digest, { index: `chainid:${digest}` });
  item.set('cache.blobChainID', digest, { index: `blobchainid:${digest}` });
  item.set('cache.snapshot', `rec${i}`);
  item.set('cache.blobOnly', false);
  item.set('cache.imageRefs', [`docker.io/library/app:${i % 10}`]);
  item.set('cache.annotations', { 'containerd.io/uncompressed': digest });
  item.set('cache.equalMutable', '');
  item.set('cache.retain', false);
}

async function withStore<T>(sync: boolean, fn: (store: MetadataStore, dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'buildcache-metadata-bench-'));
  const store = await MetadataStore.open(dir, { sync });
  try {
    return await fn(store, dir);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Commits per second for COMMITS single-item commits (3 changed keys each), `concurrency` at a time. */
async function commitRate(sync: boolean, concurrency: number): Promise<{ commitsPerSec: number; batches: number }> {
  return withStore(sync, async (store) => {
    const items = await Promise.all(Array.from({ length: COMMITS }, (_, i) => store.get(`rec${i}`)));
    const start = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < COMMITS) {
          const item = items[next++]!;
          item.set('snapshot.size', next);
          item.set('cache.lastUsedAt', Date.now());
          item.set('cache.chainID', `sha256:${next}`, { index: `chainid:sha256:${next}` });
          await item.commit();
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    return { commitsPerSec: Math.round(COMMITS / seconds), batches: store.stats().batches };
  });
}

async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size;
  return total;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function large(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'buildcache-metadata-bench-'));
  try {
    let store = await MetadataStore.open(dir, { sync: false });
    const fillStart = performance.now();
    for (let chunk = 0; chunk < RECORDS; chunk += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, RECORDS - chunk) }, async (_, j) => {
          const item = await store.get(`rec${chunk + j}`);
          fillRecord(item, chunk + j);
          await item.commit();
        }),
      );
    }
    const fillSeconds = (performance.now() - fillStart) / 1000;
    await store.close();
    const sizeOnDisk = await dirSize(dir);

    // Exact search on a cold store (each hit loads its item with one range read).
    store = await MetadataStore.open(dir);
    const latencies: number[] = [];
    for (let s = 0; s < SEARCHES; s++) {
      const i = Math.floor(Math.random() * RECORDS);
      const digest = `sha256:${(i * 2654435761 % 2 ** 32).toString(16).padStart(8, '0')}${'0'.repeat(56)}`;
      const t = performance.now();
      const hits = await store.search(`chainid:${digest}`);
      latencies.push((performance.now() - t) * 1000);
      if (hits.length === 0) throw new Error(`search found nothing for record ${i}`);
    }
    await store.close();
    latencies.sort((a, b) => a - b);

    store = await MetadataStore.open(dir);
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const allStart = performance.now();
    let n = 0;
    let keys = 0;
    for await (const item of store.all()) {
      n++;
      keys += item.keys().length;
    }
    const allSeconds = (performance.now() - allStart) / 1000;
    gc();
    const heapMB = Math.round((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20);
    await store.close();
    if (n !== RECORDS) throw new Error(`all() yielded ${n} items, expected ${RECORDS}`);
    return {
      records: RECORDS,
      keysPerRecord: keys / n,
      fillRecordsPerSec: Math.round(RECORDS / fillSeconds),
      allItemsPerSec: Math.round(n / allSeconds),
      allSeconds: Number(allSeconds.toFixed(2)),
      retainedHeapAfterAllMB: heapMB,
      exactSearchMicros: { p50: Math.round(percentile(latencies, 50)), p99: Math.round(percentile(latencies, 99)) },
      sizeOnDiskBytes: sizeOnDisk,
      bytesPerRecord: Math.round(sizeOnDisk / RECORDS),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const result = {
  node: process.version,
  commits: COMMITS,
  sequentialSync: await commitRate(true, 1),
  concurrent64Sync: await commitRate(true, 64),
  concurrentAllSync: await commitRate(true, COMMITS),
  sequentialNoSync: await commitRate(false, 1),
  concurrent64NoSync: await commitRate(false, 64),
  at100k: await large(),
};
console.log(JSON.stringify(result, null, 2));
