/**
 * kill -9 of a process using the cache — while building (commit, finalize, getRemote) and while
 * pruning — at random moments, 20+ times per backend: every time, the cache opens cleanly, every
 * record loads, and no lease or snapshot is left that no record owns.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/cache';
import { mountPointsUnder } from '@buildcache/snapshot';
import { containerdAddress } from '../harness/containerd.js';
import type { WorkerConfig } from './fixtures/crash-worker.js';
import { mkdtemp, rm } from 'node:fs/promises';

const worker = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-worker.js');
const execFileP = promisify(execFile);
const ROUNDS = 22;

/** Runs the worker until it has printed `minLines` lines plus a random extra delay, then SIGKILLs it. */
function runAndKill(cfg: WorkerConfig, minLines: number, extraMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      lines.push(...d.split('\n').filter(Boolean));
      if (!timer && lines.length >= minLines) timer = setTimeout(() => child.kill('SIGKILL'), extraMs);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' || code === 0) resolve(lines);
      else reject(new Error(`worker failed (${code}): ${stderr}`));
    });
  });
}

/** Unmounts what a failing test left under its dir, so that the dir can be removed. */
async function unmountLeftovers(dir: string): Promise<void> {
  for (const p of await mountPointsUnder(dir)) await execFileP('umount', ['-l', p]).catch(() => undefined);
}

/** Every lease belongs to a record; every snapshot is held by a lease (directly or as a parent). */
async function checkNoOrphans(cache: CacheManager, backend: Backend): Promise<number> {
  const ids = new Set<string>();
  for await (const u of cache.diskUsage()) ids.add(u.id);
  for (const id of ids) {
    const ref = await cache.get(id, { noUpdateLastUsed: true });
    await ref.release();
  }
  // get() of an unused mutable record commits it, and releasing that drops both (BuildKit's rule):
  // collect what that freed before checking that nothing is left unheld.
  await backend.garbageCollect();
  const held = new Set<string>();
  for (const lease of await backend.leases.list()) {
    const owner = lease.labels['buildcache/record'];
    assert.ok(owner !== undefined, `lease ${lease.id} does not belong to a record`);
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

const kinds: { name: string; make: (dir: string) => Omit<WorkerConfig, 'mode' | 'cacheRoot'> }[] = [
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

for (const kind of kinds) {
  describe(`crash safety on ${kind.name}`, () => {
    test(`kill -9 during build and prune, ${ROUNDS} times: opens cleanly, no orphans`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'bc-crash-'));
      const base = kind.make(dir);
      const cacheRoot = join(dir, 'cache');
      const open = (): Promise<Backend> =>
        base.embedded
          ? openEmbeddedBackend({ ...base.embedded, logger: pino({ level: 'silent' }) })
          : openContainerdBackend({ ...base.containerd!, logger: pino({ level: 'silent' }) });
      try {
        let maxRecords = 0;
        for (let round = 0; round < ROUNDS; round++) {
          const mode = round % 4 === 3 ? 'prune' : 'build';
          await runAndKill({ ...base, cacheRoot, mode }, 1 + Math.floor(Math.random() * 6), Math.floor(Math.random() * 40));
          const backend = await open();
          const cache = await CacheManager.open({ root: cacheRoot, backend, logger: pino({ level: 'silent' }) });
          try {
            assert.deepEqual(await mountPointsUnder(dir), [], 'opening removed the temp mounts the killed worker left');
            maxRecords = Math.max(maxRecords, await checkNoOrphans(cache, backend));
          } finally {
            await cache.close();
            await backend.close();
          }
        }
        assert.ok(maxRecords > 0, 'the worker got far enough to create records');
      } finally {
        await unmountLeftovers(dir);
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}
