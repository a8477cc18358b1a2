/**
 * du and prune at scale (issue 6): N synthetic records (finalized, sizes known, chains of ten) per
 * backend; `du` cold as a fresh `buildcache du` process, `du` warm in-process, `prune --all`, and the
 * longest time another cache call waited while the prune ran. The records have no snapshots behind
 * them, so this measures the cache's own work. Usage: node test/dist/bench/scale.js [N...]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/cache';
import { startContainerd, type ContainerdInstance } from '../harness/containerd.js';
import { writeSyntheticRecords } from '../support/synthetic.js';
import { whileProbing } from '../support/probe.js';

const execFileP = promisify(execFile);
const logger = pino({ level: 'silent' });
const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');

async function seconds<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, +((performance.now() - t0) / 1000).toFixed(4)];
}

async function run(name: string, n: number, dir: string, daemon?: ContainerdInstance): Promise<Record<string, unknown>> {
  const namespace = `scale-${randomBytes(4).toString('hex')}`;
  const global = daemon ? ['--root', dir, '--containerd', daemon.address, '--namespace', namespace] : ['--root', dir, '--snapshotter', 'native'];
  const cacheRoot = daemon ? join(dir, `containerd-${namespace}`) : dir;
  const open = (): Promise<Backend> =>
    daemon
      ? openContainerdBackend({ address: daemon.address, namespace, snapshotter: 'overlayfs', logger })
      : openEmbeddedBackend({ root: join(dir, 'backend'), snapshotter: 'native', logger });
  await writeSyntheticRecords(join(cacheRoot, 'metadata'), n);
  const [, cliDuCold] = await seconds(() => execFileP(process.execPath, [cli, ...global, 'du', '--format', 'json'], { maxBuffer: 1 << 30 }));
  const backend = await open();
  const [cache, openS] = await seconds(() => CacheManager.open({ root: cacheRoot, backend, logger }));
  const count = async (): Promise<number> => {
    let c = 0;
    for await (const _ of cache.diskUsage()) c++;
    return c;
  };
  const [seen, duWarm1] = await seconds(count);
  const [, duWarm] = await seconds(count);
  const { result: pruned, seconds: prune, maxWaitMs } = await whileProbing(
    () => cache.prune([{ all: true }]),
    () => cache.search('chainid:', { prefix: true }),
  );
  await cache.close();
  await backend.close();
  if (seen !== n || pruned.deleted !== n) throw new Error(`${name} N=${n}: du saw ${seen}, prune deleted ${pruned.deleted}`);
  return {
    backend: name, n, cliDuColdS: cliDuCold, openS, duFirstInProcessS: duWarm1, duWarmS: duWarm, pruneAllS: +prune.toFixed(3),
    maxWaitDuringPruneMs: maxWaitMs,
  };
}

async function main(): Promise<void> {
  const ns = process.argv.slice(2).map(Number);
  let daemon: ContainerdInstance | undefined;
  try {
    daemon = await startContainerd();
  } catch (err) {
    process.stderr.write(`containerd backend skipped: ${String(err)}\n`);
  }
  try {
    for (const n of ns.length ? ns : [1000, 10000, 100000]) {
      for (const d of daemon ? [undefined, daemon] : [undefined]) {
        const dir = await mkdtemp(join(tmpdir(), 'bc-scale-'));
        try {
          process.stdout.write(JSON.stringify(await run(d ? 'containerd-overlayfs' : 'embedded-native', n, dir, d)) + '\n');
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
