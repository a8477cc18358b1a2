/**
 * What the crash tests share: a worker killed at a kill point (the awaited backend calls, see the
 * worker), and the checks on what it left. Kill points come from a seed, printed by the tests;
 * `BUILDCACHE_SEED=<seed>` replays a run.
 */
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/cache';
import { mountPointsUnder } from '@buildcache/snapshot';
import { containerdAddress } from '../harness/containerd.js';
import type { WorkerConfig, Workload } from './fixtures/crash-worker.js';

export type { Workload };

const worker = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-worker.js');
const execFileP = promisify(execFile);
const silent = pino({ level: 'silent' });
/** The seed of this run's kill points. */
export const SEED = process.env.BUILDCACHE_SEED ? Number(process.env.BUILDCACHE_SEED) : randomInt(2 ** 31);

/** mulberry32: a small seeded PRNG, so that a failing run's kill points can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs the worker to its end or its kill point; returns what it printed (`events N` after a one-shot workload). */
function runWorker(cfg: WorkerConfig): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' || code === 0) resolve(stdout.split('\n').filter(Boolean));
      else reject(new Error(`worker failed (${code}): ${stderr}`));
    });
  });
}

/** Unmounts what a failing test left under its dir, so that the dir can be removed. */
async function unmountLeftovers(dir: string): Promise<void> {
  for (const p of await mountPointsUnder(dir)) await execFileP('umount', ['-l', p]).catch(() => undefined);
}

/**
 * Every listed record mounts; every lease belongs to a record; every snapshot is held by a lease
 * (directly or as a parent). Returns how many records there are.
 */
async function checkRecordsAndOrphans(cache: CacheManager, backend: Backend): Promise<number> {
  const ids = new Set<string>();
  for await (const u of cache.diskUsage()) ids.add(u.id);
  for (const id of ids) {
    const ref = await cache.get(id, { noUpdateLastUsed: true });
    try {
      const m = await ref.mount({ readonly: true }).catch((err: unknown) => {
        throw new Error(`record ${id} is listed but does not mount: ${String(err)}`);
      });
      await m.unmount();
    } finally {
      await ref.release();
    }
  }
  // get() of an unused mutable record commits it, and releasing that drops both (BuildKit's rule):
  // collect what that freed before checking that nothing is left unheld.
  await backend.garbageCollect();
  const held = new Set<string>();
  for (const lease of await backend.leases.list()) {
    assert.ok(cache.context.records.has(lease.id.replace(/-(view|variants)$/, '')), `lease ${lease.id} has no record`);
    for (const r of await backend.leases.listResources(lease.id)) if (r.type.startsWith('snapshots/')) held.add(r.id);
  }
  const reachable = new Set<string>();
  for (let key of held) {
    for (;;) {
      const info = await backend.snapshotter.stat(key).catch(() => undefined);
      if (!info || reachable.has(key)) break;
      reachable.add(key);
      if (!info.parent) break;
      key = info.parent;
    }
  }
  for await (const s of backend.snapshotter.walk()) {
    assert.ok(reachable.has(s.name), `snapshot ${s.name} (${s.kind}) is held by no lease`);
  }
  return ids.size;
}

/** The backends the crash tests kill workers on. */
export const kinds: { name: string; make: (dir: string) => Omit<WorkerConfig, 'mode' | 'cacheRoot'> }[] = [
  { name: 'embedded-overlayfs', make: (dir) => ({ embedded: { root: join(dir, 'backend'), snapshotter: 'overlayfs' } }) },
  { name: 'embedded-native', make: (dir) => ({ embedded: { root: join(dir, 'backend'), snapshotter: 'native' } }) },
  {
    name: 'containerd-overlayfs',
    make: (dir) => ({
      containerd: {
        address: containerdAddress(),
        namespace: `bccrash-${randomBytes(4).toString('hex')}`,
        snapshotter: 'overlayfs',
        mountRoot: join(dir, 'mounts'),
      },
    }),
  },
];

/** A backend kind of the crash tests. */
export type CrashKind = (typeof kinds)[number];

/** One crash-test state (backend and cache root in a temp dir) and the checks after a kill. */
export class CrashBench {
  private constructor(
    readonly dir: string,
    private readonly base: Omit<WorkerConfig, 'mode' | 'cacheRoot'>,
  ) {}

  static async make(kind: CrashKind): Promise<CrashBench> {
    const dir = await mkdtemp(join(tmpdir(), 'bc-crash-'));
    return new CrashBench(dir, kind.make(dir));
  }

  get cacheRoot(): string {
    return join(this.dir, 'cache');
  }

  run(mode: Workload, killAt?: number, record?: string): Promise<string[]> {
    return runWorker({
      ...this.base, cacheRoot: this.cacheRoot, mode, ...(killAt === undefined ? {} : { killAt }), ...(record === undefined ? {} : { record }),
    });
  }

  private openBackend(): Promise<Backend> {
    return this.base.embedded
      ? openEmbeddedBackend({ ...this.base.embedded, logger: silent })
      : openContainerdBackend({ ...this.base.containerd!, logger: silent });
  }

  /** Opens what the worker left (backend and cache) for `fn`, closing both afterwards. */
  async open<T>(fn: (cache: CacheManager, backend: Backend) => Promise<T>): Promise<T> {
    const backend = await this.openBackend();
    try {
      const cache = await CacheManager.open({ root: this.cacheRoot, backend, logger: silent });
      try {
        return await fn(cache, backend);
      } finally {
        await cache.close();
      }
    } finally {
      await backend.close();
    }
  }

  /**
   * Opens what the worker left and checks it; with `pruneAll`, also that `prune --all` leaves no
   * lease and (after GC) no snapshot. Returns how many records there were.
   */
  async check(pruneAll: boolean): Promise<number> {
    const backend = await this.openBackend();
    try {
      const left = await backend.leases.list();
      const cache = await CacheManager.open({ root: this.cacheRoot, backend, logger: silent });
      try {
        for (const lease of left) {
          assert.equal(lease.labels['buildcache/owner'], cache.context.owner, `lease ${lease.id} carries the cache's owner label`);
          if (lease.id.startsWith('buildcache-gc-')) assert.ok(lease.labels['containerd.io/gc.expire'], `GC lease ${lease.id} expires`);
        }
        assert.deepEqual(await mountPointsUnder(this.dir), [], 'opening removed the temp mounts the killed worker left');
        const records = await checkRecordsAndOrphans(cache, backend);
        if (pruneAll) {
          await cache.prune([{ all: true }]);
          await backend.garbageCollect();
          assert.deepEqual((await backend.leases.list()).map((l) => l.id), [], 'prune --all left no lease');
          const snapshots: string[] = [];
          for await (const s of backend.snapshotter.walk()) snapshots.push(s.name);
          assert.deepEqual(snapshots, [], 'prune --all and GC left no snapshot');
        }
        return records;
      } finally {
        await cache.close();
      }
    } finally {
      await backend.close();
    }
  }

  async close(): Promise<void> {
    await unmountLeftovers(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs `fn` on a fresh bench, removed afterwards. */
export async function withBench(kind: CrashKind, fn: (b: CrashBench) => Promise<void>): Promise<void> {
  const bench = await CrashBench.make(kind);
  try {
    await fn(bench);
  } finally {
    await bench.close();
  }
}
