/**
 * open, du and prune at scale (issues 6, 12): N synthetic records (finalized, sizes known, chains of ten) per
 * backend; `du` cold as a fresh `buildcache du` process, `du` warm in-process, `prune --all`, and the
 * longest time another cache call waited while the prune ran. The records have no snapshots behind
 * them, so this measures the cache's own work. Each measurement runs in a fresh process, so that RSS
 * figures (the kernel's, not sampled) are its own. Usage: node test/dist/bench/scale.js [N...]
 * [embedded-native] (default 1000 10000 100000, both backends).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { CacheManager, openEmbeddedBackend, openContainerdBackend } from '@buildcache/cache';
import { startContainerd, type ContainerdInstance } from '../harness/containerd.js';
import { writeSyntheticRecords } from '../support/synthetic.js';
import { whileProbing } from '../support/probe.js';
import { peakRssMiB, resetPeakRss, rssMiB } from '../support/memory.js';

const execFileP = promisify(execFile);
const logger = pino({ level: 'silent' });
const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');
const self = fileURLToPath(import.meta.url);
/** Figures measured before issue 12, printed beside the new ones. */
const baseline = JSON.parse(
  await readFile(resolve(dirname(self), '../../bench/scale-baseline.json'), 'utf8'),
) as Record<string, unknown>;

async function seconds<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, +((performance.now() - t0) / 1000).toFixed(4)];
}

/** Where one measurement runs: a cache root and the backend under it. */
interface Target {
  readonly name: string;
  readonly dir: string;
  readonly address?: string;
  readonly namespace: string;
}

const cacheRootOf = (t: Target): string => (t.address ? join(t.dir, `containerd-${t.namespace}`) : t.dir);

/**
 * In a fresh process (so that RSS is the cache's alone): open, first du (and its first row), warm
 * du, prune --all; peak RSS is the kernel's high-water mark.
 */
async function measure(t: Target, n: number): Promise<Record<string, unknown>> {
  await resetPeakRss();
  const backend = t.address
    ? await openContainerdBackend({ address: t.address, namespace: t.namespace, snapshotter: 'overlayfs', logger })
    : await openEmbeddedBackend({ root: join(t.dir, 'backend'), snapshotter: 'native', logger });
  const [cache, openS] = await seconds(() => CacheManager.open({ root: cacheRootOf(t), backend, logger }));
  const rssAfterOpen = await rssMiB();
  let firstRowMs = -1;
  const t0 = performance.now();
  const count = async (): Promise<number> => {
    let c = 0;
    for await (const _ of cache.diskUsage()) if (c++ === 0 && firstRowMs < 0) firstRowMs = +(performance.now() - t0).toFixed(2);
    return c;
  };
  const [seen, firstDu] = await seconds(count);
  const [, warmDu] = await seconds(count);
  const { result: pruned, seconds: prune, maxWaitMs } = await whileProbing(
    () => cache.prune([{ all: true }]),
    () => cache.search('chainid:', { prefix: true }),
  );
  await cache.close();
  await backend.close();
  if (seen !== n || pruned.deleted !== n) throw new Error(`${t.name} N=${n}: du saw ${seen}, prune deleted ${pruned.deleted}`);
  return {
    openS, rssAfterOpenMiB: rssAfterOpen, firstDuRowMs: firstRowMs, firstDuS: firstDu, warmDuS: warmDu,
    pruneAllS: +prune.toFixed(3), maxWaitDuringPruneMs: maxWaitMs, peakRssMiB: await peakRssMiB(),
  };
}

async function run(t: Target, n: number): Promise<Record<string, unknown>> {
  const global = t.address ? ['--root', t.dir, '--containerd', t.address, '--namespace', t.namespace] : ['--root', t.dir, '--snapshotter', 'native'];
  await writeSyntheticRecords(join(cacheRootOf(t), 'metadata'), n);
  const [, cliDuCold] = await seconds(() => execFileP(process.execPath, [cli, ...global, 'du', '--format', 'json'], { maxBuffer: 1 << 30 }));
  const { stdout } = await execFileP(process.execPath, [self, '--measure', JSON.stringify(t), String(n)], { maxBuffer: 1 << 20 });
  const before = (baseline[t.name] as Record<string, unknown> | undefined)?.[String(n)];
  return { backend: t.name, n, cliDuColdS: cliDuCold, ...(JSON.parse(stdout) as Record<string, unknown>), ...(before ? { before } : {}) };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--measure') {
    const target = JSON.parse(process.argv[3]!) as Target;
    process.stdout.write(JSON.stringify(await measure(target, Number(process.argv[4]))) + '\n');
    return;
  }
  const args = process.argv.slice(2);
  const ns = args.filter((a) => /^\d+$/.test(a)).map(Number);
  const embeddedOnly = args.includes('embedded-native');
  let daemon: ContainerdInstance | undefined;
  try {
    if (!embeddedOnly) daemon = await startContainerd();
  } catch (err) {
    process.stderr.write(`containerd backend skipped: ${String(err)}\n`);
  }
  try {
    for (const n of ns.length ? ns : [1000, 10000, 100000]) {
      for (const d of daemon ? [undefined, daemon] : [undefined]) {
        const dir = await mkdtemp(join(tmpdir(), 'bc-scale-'));
        try {
          const target: Target = d
            ? { name: 'containerd-overlayfs', dir, address: d.address, namespace: `scale-${randomBytes(4).toString('hex')}` }
            : { name: 'embedded-native', dir, namespace: '' };
          process.stdout.write(JSON.stringify(await run(target, n)) + '\n');
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
