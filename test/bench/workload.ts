/**
 * The benchmark workload of shared/reference/performance-targets.md, through the public API, on
 * the embedded backend (native and overlay) and on a private containerd. Prints one JSON object
 * per (backend, N). Usage: node test/dist/bench/workload.js [N...] [backend-name...]
 * (default: 1000 10000, every backend; e.g. `10000 embedded-native`).
 */
import { mkdtemp, rm, readdir, writeFile } from 'node:fs/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend, openContainerdBackend, type Backend, type ImmutableRef } from '@buildcache/cache';
import { startContainerd, type ContainerdInstance } from '../harness/containerd.js';
import { whileProbing } from '../support/probe.js';
import { peakRssMiB, residentSplitMiB, resetPeakRss, rssMiB } from '../support/memory.js';

const logger = pino({ level: 'silent' });
const DEPTH = 10;
const payload = randomBytes(4096);

interface Setup {
  name: string;
  open(): Promise<Backend>;
  /** Snapshot dirs left on disk (embedded only). */
  leftovers(): Promise<number | null>;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

async function countDu(cache: CacheManager): Promise<number> {
  let n = 0;
  for await (const _ of cache.diskUsage()) n++;
  return n;
}

async function workload(setup: Setup, n: number, dir: string): Promise<Record<string, unknown>> {
  const root = join(dir, 'cache');
  // The kernel's high-water mark, reset before each phase and read after it: the peak is the highest.
  // CPU seconds and garbage-collection pauses per phase change less with the machine's load than time.
  const peaks: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  const gcMs: Record<string, number> = {};
  // What the resident memory is made of at the end of each phase (the last time a phase name runs).
  const split: Record<string, { anon: number; file: number; v8: number }> = {};
  let gcTotal = 0;
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcTotal += e.duration;
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<[T, number]> => {
    await resetPeakRss();
    const cpu0 = process.cpuUsage();
    const gc0 = gcTotal;
    const out = await timed(fn);
    await new Promise((r) => setImmediate(r)); // Lets the GC entries of the phase arrive.
    const used = process.cpuUsage(cpu0);
    peaks[name] = Math.max(peaks[name] ?? 0, await peakRssMiB());
    cpu[name] = +((cpu[name] ?? 0) + (used.user + used.system) / 1e6).toFixed(2);
    gcMs[name] = Math.round((gcMs[name] ?? 0) + gcTotal - gc0);
    split[name] = await residentSplitMiB();
    return out;
  };
  let backend!: Backend;
  let cache!: CacheManager;
  await phase('open', async () => {
    backend = await setup.open();
    cache = await CacheManager.open({ root, backend, logger });
  });
  const reopen = async (): Promise<void> => {
    await cache.close();
    await backend.close();
    backend = await setup.open();
    cache = await CacheManager.open({ root, backend, logger });
  };

  const [, create] = await phase('create', async () => {
    let parent: ImmutableRef | undefined;
    for (let i = 0; i < n; i++) {
      if (i % DEPTH === 0) parent = undefined;
      const m = await cache.new(parent, { retain: true });
      await parent?.release();
      const mnt = await m.mount();
      await writeFile(join(mnt.target, `file-${i}`), payload);
      await mnt.unmount();
      const imm = await m.commit();
      if (i % DEPTH === DEPTH - 1 || i === n - 1) {
        await imm.release();
        parent = undefined;
      } else parent = imm;
    }
  });
  const [, reopenAfterCreate] = await phase('reopen', reopen);
  const [firstCount, firstDu] = await phase('firstDu', () => countDu(cache));
  const [, warmDu1] = await phase('du', () => countDu(cache));
  const [, reopenS] = await phase('reopen', reopen);
  const rssAfterReopen = await rssMiB();
  const [, coldDu] = await phase('du', () => countDu(cache));
  const [, warmDu] = await phase('du', () => countDu(cache));

  // Prune everything while another caller keeps using the cache: the longest it waited.
  const [{ result: pruned, seconds: prune, maxWaitMs }] = await phase('prune', () =>
    whileProbing(
      () => cache.prune([{ all: true }]),
      () => cache.search('chainid:', { prefix: true }),
    ),
  );
  const [after] = await phase('du', () => countDu(cache));
  const [leftovers] = await phase('close', async () => {
    const left = await setup.leftovers();
    await cache.close();
    await backend.close();
    return left;
  });
  gcObserver.disconnect();
  if (firstCount !== n || pruned.deleted !== n || after !== 0 || (leftovers ?? 0) !== 0) {
    throw new Error(`${setup.name} N=${n}: du ${firstCount}, pruned ${pruned.deleted}, left ${after} records, ${leftovers} dirs`);
  }
  return {
    backend: setup.name,
    n,
    createS: +create.toFixed(3),
    recordsPerS: Math.round(n / create),
    reopenAfterCreateS: +reopenAfterCreate.toFixed(4),
    firstDuS: +firstDu.toFixed(4),
    duWarmAfterFirstS: +warmDu1.toFixed(4),
    reopenS: +reopenS.toFixed(4),
    duColdS: +coldDu.toFixed(4),
    duWarmS: +warmDu.toFixed(4),
    pruneS: +prune.toFixed(3),
    maxWaitDuringPruneMs: maxWaitMs,
    peakRssMiB: Math.max(...Object.values(peaks)),
    peakRssByPhaseMiB: peaks,
    rssAfterReopenMiB: rssAfterReopen,
    cpuByPhaseS: cpu,
    gcPauseByPhaseMs: gcMs,
    residentAtPhaseEndMiB: split,
    nodeFlags: process.execArgv,
  };
}

function embedded(mode: 'native' | 'overlayfs', dir: string): Setup {
  const root = join(dir, 'backend');
  return {
    name: `embedded-${mode}`,
    open: () => openEmbeddedBackend({ root, snapshotter: mode, logger }),
    leftovers: async () => (await readdir(join(root, 'snapshots')).catch(() => [])).length,
  };
}

function containerd(daemon: ContainerdInstance, mode: 'native' | 'overlayfs'): Setup {
  const namespace = `bench-${randomBytes(4).toString('hex')}`;
  return {
    name: `containerd-${mode}`,
    open: () => openContainerdBackend({ address: daemon.address, namespace, snapshotter: mode, logger }),
    leftovers: async () => null,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const sizes = args.filter((a) => /^\d+$/.test(a)).map(Number);
  const only = args.filter((a) => !/^\d+$/.test(a));
  const ns = sizes.length ? sizes : [1000, 10000];
  let daemon: ContainerdInstance | undefined;
  try {
    daemon = await startContainerd();
  } catch (err) {
    process.stderr.write(`containerd backend skipped: ${String(err)}\n`);
  }
  try {
    for (const n of ns) {
      const kinds: ((dir: string) => Setup)[] = [
        (d) => embedded('native', d),
        (d) => embedded('overlayfs', d),
        ...(daemon ? [() => containerd(daemon!, 'overlayfs')] : []),
      ];
      for (const make of kinds) {
        const dir = await mkdtemp(join(tmpdir(), 'bc-bench-'));
        try {
          const setup = make(dir);
          if (only.length && !only.includes(setup.name)) continue;
          process.stdout.write(JSON.stringify(await workload(setup, n, dir)) + '\n');
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await daemon?.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err) + '\n');
  process.exit(1);
});
