/**
 * Heap cost of the embedded backend's passes over every snapshot: opening a root (its recovery
 * scan) and one garbage collection that removes all of N snapshots (chains of ten, as the anchor
 * workload leaves them after a prune). The records are written straight into the backend's LevelDB,
 * so the run takes seconds. What it prints is the growth of V8's old space across each step — the
 * bytes promoted there, which stay until the next full collection and set how far the heap grows —
 * and the number of full collections during the step (growth is only comparable when it is 0; run
 * with a large initial old space so that none happens).
 * Usage: node --expose-gc --initial-old-space-size=512 test/dist/bench/embedded-gc.js [N...]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Level } from 'level';
import { openEmbeddedBackend } from '@buildcache/snapshot';

const DEPTH = 10;
const MiB = 2 ** 20;

const oldSpaceUsed = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;

let majors = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
}).observe({ entryTypes: ['gc'] });

/** Old-space growth (MiB), full collections and seconds of `fn`, from a collected heap. */
async function measure<T>(fn: () => Promise<T>): Promise<[T, { oldGrowthMiB: number; fullGCs: number; seconds: number }]> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 10)); // Lets the forced collection's entry arrive first.
  const majors0 = majors;
  const before = oldSpaceUsed();
  const t0 = performance.now();
  const out = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const growth = oldSpaceUsed() - before;
  await new Promise((r) => setImmediate(r)); // Lets the GC entries of the step arrive.
  return [out, { oldGrowthMiB: +(growth / MiB).toFixed(2), fullGCs: majors - majors0, seconds: +seconds.toFixed(3) }];
}

/** Writes `n` committed snapshots in chains of `DEPTH` (no directories: the disk phase has nothing to do). */
async function writeSnapshots(meta: string, n: number): Promise<void> {
  const db = new Level<string, unknown>(meta, { valueEncoding: 'json' });
  await db.open();
  try {
    const now = Date.now();
    const ns = String(BigInt(now) * 1_000_000n);
    for (let start = 0; start < n; start += 1000) {
      const ops: { type: 'put'; key: string; value: unknown }[] = [];
      for (let i = start; i < Math.min(n, start + 1000); i++) {
        const name = `sha256:${String(i).padStart(64, '0')}`;
        const parent = i % DEPTH === 0 ? undefined : `sha256:${String(i - 1).padStart(64, '0')}`;
        const rec = { id: i + 1, kind: 'committed', ...(parent ? { parent } : {}), labels: {}, created: now, updated: now, createdNs: ns, updatedNs: ns };
        ops.push({ type: 'put', key: `snap!${name}`, value: rec });
        if (parent) ops.push({ type: 'put', key: `child!${parent}\u0000${name}`, value: '' });
      }
      await db.batch(ops, { sync: false });
    }
    await db.put('meta!nextid', n + 1, { sync: true });
  } finally {
    await db.close();
  }
}

async function run(n: number): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), 'bc-bench-gc-'));
  try {
    await (await openEmbeddedBackend({ root, snapshotter: 'native' })).close();
    await writeSnapshots(join(root, 'meta'), n);
    const [backend, open] = await measure(() => openEmbeddedBackend({ root, snapshotter: 'native' }));
    try {
      const [stats, gc] = await measure(() => backend.garbageCollect());
      if (stats.snapshotsRemoved !== n) throw new Error(`GC removed ${stats.snapshotsRemoved} of ${n} snapshots`);
      return { n, open, gc };
    } finally {
      await backend.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number);
  for (const n of sizes.length ? sizes : [10000]) process.stdout.write(JSON.stringify({ ...(await run(n)), nodeFlags: process.execArgv }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err) + '\n');
  process.exit(1);
});
