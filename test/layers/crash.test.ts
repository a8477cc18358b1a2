/**
 * kill -9 of a process using the layer store in the middle of register, createRWLayer (with an init
 * layer) and releaseRWLayer, at kill points spread over each operation, on the embedded backend and
 * containerd: the reopened store has no work left in tmp, the cache holds exactly the records of the
 * layers and read-write layers the store lists (nothing leaked), the base layer registered before is
 * intact, every layer re-exports to its diffID and every read-write layer mounts; at the end, with
 * the store's holds dropped, `prune --all` and GC leave no lease and no snapshot.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { HOLDER, LayerStore } from '@buildcache/layers';
import { mountPointsUnder } from '@buildcache/snapshot';
import { BACKENDS, openBackendSpec, type TestBackend } from '../support/backends.js';
import type { LayerWorkerConfig, LayerWorkload } from './fixtures/crash-worker.js';

const worker = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-worker.js');
const run = promisify(execFile);
const silent = pino({ level: 'silent' });
/** Kill points tried per operation and backend (spread evenly from a seeded offset; `BUILDCACHE_SEED` replays a run). */
const POINTS = 3;
const SEED = process.env.BUILDCACHE_SEED ? Number(process.env.BUILDCACHE_SEED) : randomInt(1 << 30);

function runWorker(cfg: LayerWorkerConfig): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('exit', (code, signal) => (signal === 'SIGKILL' || code === 0 ? resolve(out.split('\n').filter(Boolean)) : reject(new Error(`worker failed (${code}): ${err}`))));
  });
}

/** Reopens what the worker left and checks it; with `drop`, then lets go of everything and checks the backend is empty. */
async function check(tb: TestBackend, dir: string, baseChainID: string | undefined, drop = false): Promise<string | undefined> {
  const backend = await openBackendSpec(tb.spec);
  try {
    const cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger: silent });
    const store = await LayerStore.open({ cache, root: join(dir, 'layers') });
    try {
      assert.deepEqual(await readdir(join(dir, 'layers', 'tmp')), [], 'no work left in tmp');
      const expected = new Set<string>();
      for (const l of store.list()) expected.add(l.recordId);
      for (const m of store.listRWLayers()) for (const id of [m.mountID, m.initID]) if (id) expected.add(id);
      const ids = new Set<string>();
      for await (const u of cache.diskUsage()) ids.add(u.id);
      assert.deepEqual([...ids].sort(), [...expected].sort(), 'the cache holds exactly the records of what the store lists');
      const base = store.list().find((l) => l.parent === undefined);
      if (baseChainID) assert.equal(base?.chainID, baseChainID, 'the base layer committed before is intact');
      for (const l of store.list()) {
        const hash = createHash('sha256');
        const handle = await store.get(l.chainID);
        for await (const c of handle.tarStream()) hash.update(c);
        assert.equal(`sha256:${hash.digest('hex')}`, l.diffID, `layer ${l.chainID} re-exports to its diffID`);
        await store.release(handle);
      }
      for (const m of store.listRWLayers()) {
        const rw = store.getRWLayer(m.name);
        await rw.mount();
        await rw.unmount();
      }
      if (drop) {
        for (const id of expected) await cache.setHeld(id, HOLDER, false);
        await cache.prune([{ all: true }]);
        await backend.garbageCollect();
        assert.deepEqual((await backend.leases.list()).map((l) => l.id), [], 'prune --all left no lease');
        const snapshots: string[] = [];
        for await (const s of backend.snapshotter.walk()) snapshots.push(s.name);
        assert.deepEqual(snapshots, [], 'prune --all and GC left no snapshot');
      }
      return base?.chainID;
    } finally {
      await store.close();
      await cache.close();
    }
  } finally {
    await backend.close();
  }
}

/** Kill points to try of `events`: all when few, else `POINTS` spread from a seeded offset. */
function points(events: number, salt: number): number[] {
  if (events <= POINTS) return [...Array(events).keys()];
  const step = events / POINTS;
  const offset = (SEED + salt) % Math.floor(step);
  return [...Array(POINTS).keys()].map((i) => Math.min(events - 1, Math.floor(i * step) + offset));
}

const WORKLOADS: readonly LayerWorkload[] = ['register', 'create-rw', 'release-rw'];

for (const kind of BACKENDS.filter((k) => k.name.endsWith('overlayfs'))) {
  describe(`layer store kill points on ${kind.name}`, () => {
    for (const [w, mode] of WORKLOADS.entries()) {
      test(`kill -9 mid-${mode}: nothing leaked, nothing committed lost (seed ${SEED})`, async (t) => {
        const tb = await kind.open();
        await tb.backend.close();
        const dir = join(tb.dir, 'state');
        try {
          await mkdir(join(dir, 'src'), { recursive: true });
          await writeFile(join(dir, 'src', 'base.txt'), 'base');
          await run('tar', ['-C', join(dir, 'src'), '-cf', join(dir, 'base.tar'), 'base.txt']);
          await writeFile(join(dir, 'src', 'top.txt'), 'top');
          await run('tar', ['-C', join(dir, 'src'), '-cf', join(dir, 'top.tar'), 'top.txt']);
          const cfg = { spec: tb.spec, dir, mode, base: join(dir, 'base.tar'), top: join(dir, 'top.tar') };
          const dry = await runWorker(cfg);
          const events = Number(/^events (\d+)$/.exec(dry.at(-1) ?? '')?.[1]);
          assert.ok(events > 0, `the ${mode} workload reports its kill points: ${dry.join(', ')}`);
          const base = await check(tb, dir, undefined);
          for (const k of points(events, w)) {
            await runWorker({ ...cfg, killAt: k });
            try {
              await check(tb, dir, base);
            } catch (err) {
              throw new Error(`${mode} killed at point ${k} of ${events}: ${String(err)}`, { cause: err });
            }
          }
          await check(tb, dir, base, true);
          t.diagnostic(`${mode}: ${events} kill points`);
        } finally {
          for (const p of await mountPointsUnder(tb.dir)) await run('umount', ['-l', p]).catch(() => undefined);
          await tb.close();
        }
      });
    }
  });
}
