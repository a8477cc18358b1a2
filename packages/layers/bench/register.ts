/**
 * Benchmark (JSON): register a real rootfs layer (tar.gz) into a layer store on the embedded backend
 * vs `tar -xzf` of the same file on the same disk; re-export throughput vs `cat` of the tar; peak RSS.
 * `LAYER_TAR_GZ=<file>` picks the layer; default: a gzip tar of /usr/share/doc made in a temp dir.
 * The file is read in 1 MiB chunks, as the image import reads layer blobs.
 * `ROUNDS=<n>` (default 3) rounds of both, in alternating order; medians are reported.
 *
 * Both sides see the same disk: nothing is deleted until every round is done and each step starts
 * after a `sync`. (Creating many files just after deleting many costs ext4 more kernel time; a
 * register timed right after `rm -rf` of tar's output paid for it: ~2x the system time.)
 * CPU seconds (all threads, and the event loop's thread alone for register) do not depend on load.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openCache } from '@buildcache/cache';
import { LayerStore, type Layer } from '../src/index.js';

const run = promisify(execFile);
const TICK = 100; // USER_HZ of /proc times
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round2 = (x: number): number => +x.toFixed(2);

/** CPU seconds from a /proc stat line: utime+stime (fields 14, 15) and cutime+cstime of waited children (16, 17). */
async function cpuOf(file: string): Promise<{ self: number; children: number }> {
  const text = await readFile(file, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
  return { self: (f[11]! + f[12]!) / TICK, children: (f[13]! + f[14]!) / TICK };
}

/** Wall seconds, CPU seconds of this process (all threads), of its event-loop thread, and of waited children, of `fn`. */
async function timed(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number; mainCpu: number; childCpu: number }> {
  await run('sync');
  const [p0, m0, c0] = [await cpuOf('/proc/self/stat'), await cpuOf(`/proc/self/task/${process.pid}/stat`), process.cpuUsage()];
  const t0 = process.hrtime.bigint();
  await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const [p1, m1, c1] = [await cpuOf('/proc/self/stat'), await cpuOf(`/proc/self/task/${process.pid}/stat`), process.cpuUsage(c0)];
  return { wall, cpu: (c1.user + c1.system) / 1e6, mainCpu: m1.self - m0.self, childCpu: p1.children - p0.children };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'layers-bench-'));
  const rounds = Number(process.env['ROUNDS'] ?? 3);
  const open: { store: LayerStore; layer: Layer; close: () => Promise<void> }[] = [];
  try {
    let gz = process.env['LAYER_TAR_GZ'];
    let source = gz ?? '/usr/share/doc';
    if (!gz) {
      gz = join(dir, 'layer.tar.gz');
      await run('sh', ['-c', `tar -C /usr/share/doc -cf - . | gzip -1 > '${gz}'`], { maxBuffer: 1 << 20 });
    } else source = gz;
    const tar = join(dir, 'layer.tar');
    await run('sh', ['-c', `gzip -dc '${gz}' > '${tar}'`]);
    const tarBytes = (await stat(tar)).size;

    const load = loadavg()[0]!;
    const ratios: number[] = [];
    const tarRuns: Awaited<ReturnType<typeof timed>>[] = [];
    const regRuns: Awaited<ReturnType<typeof timed>>[] = [];
    for (let i = 0; i < rounds; i++) {
      const out = join(dir, `tar-x-${i}`);
      await mkdir(out);
      const { cache, close } = await openCache({ root: join(dir, `cache-${i}`) });
      const store = await LayerStore.open({ cache, root: join(dir, `layers-${i}`) });
      const tarStep = async (): Promise<void> => {
        tarRuns.push(await timed(() => run('tar', ['-C', out, '-xzf', gz])));
      };
      const regStep = async (): Promise<void> => {
        regRuns.push(await timed(async () => open.push({ store, close, layer: await store.register(createReadStream(gz, { highWaterMark: 1 << 20 })) })));
      };
      for (const step of i % 2 === 0 ? [tarStep, regStep] : [regStep, tarStep]) await step();
      ratios.push(tarRuns[i]!.wall / regRuns[i]!.wall);
    }

    const { layer } = open.at(-1)!;
    let n = 0;
    let t0 = process.hrtime.bigint();
    for await (const c of layer.tarStream()) n += c.length;
    const exportSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    t0 = process.hrtime.bigint();
    await run('sh', ['-c', `cat '${tar}' > /dev/null`]);
    const catSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(`${JSON.stringify({
      source,
      tarMB: +(tarBytes / 1e6).toFixed(1),
      gzipMB: +((await stat(gz)).size / 1e6).toFixed(1),
      rounds,
      load1: round2(load),
      registerSeconds: round2(median(regRuns.map((r) => r.wall))),
      tarXzfSeconds: round2(median(tarRuns.map((r) => r.wall))),
      speedVsTar: round2(median(ratios)),
      speedVsTarEach: ratios.map(round2),
      registerCpuSeconds: round2(median(regRuns.map((r) => r.cpu))),
      registerMainThreadCpuSeconds: round2(median(regRuns.map((r) => r.mainCpu))),
      tarXzfCpuSeconds: round2(median(tarRuns.map((r) => r.childCpu))),
      exportMBps: +(n / 1e6 / exportSeconds).toFixed(1),
      catMBps: +(tarBytes / 1e6 / catSeconds).toFixed(1),
      exportBytesEqual: n === tarBytes,
      peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
    })}\n`);
  } finally {
    for (const { store, layer, close } of open) {
      await store.release(layer);
      await store.close();
      await close();
    }
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
