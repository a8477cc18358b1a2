/**
 * Benchmark (JSON): the CPU the main thread spends checking a gzip layer's diff ID before an import
 * registers it (`verifyDiffIDs`), against the CPU of the whole process, and the event loop's
 * utilization meanwhile. Layer: `LAYER_TAR_GZ` (default: the Debian minbase layer the tests' fixtures
 * cache). Each argument is a compiled `plan.js` to measure (to compare two builds in one run); runs
 * alternate between them, `ROUNDS` each (default 3).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { ImagePlan } from '../src/plan.js';

const run = promisify(execFile);
const TICK_MS = 10; // USER_HZ 100

/** utime + stime of the main thread (its task ID is the process ID), in ms. */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

async function main(): Promise<void> {
  const file = process.env['LAYER_TAR_GZ'] ?? '/tmp/buildcache-bench-cache/debian-bookworm-minbase.tar.gz';
  const rounds = Number(process.env['ROUNDS'] ?? 3);
  const modules = process.argv.slice(2).map((m) => resolve(m));
  if (modules.length === 0) modules.push(resolve(new URL('../src/plan.js', import.meta.url).pathname));
  const { stdout } = await run('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', file], { maxBuffer: 1 << 20 });
  const diffID = `sha256:${stdout.split(' ')[0]}`;
  const size = (await stat(file)).size;
  const plan = { layers: [{ file: { path: file, digest: 'sha256:blob', size }, descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:blob', size }, diffID, chainID: diffID }] };
  const verify = await Promise.all(modules.map(async (m) => (await import(m) as { verifyDiffIDs: (p: readonly ImagePlan[], k: ReadonlySet<string>) => Promise<void> }).verifyDiffIDs));
  const results = modules.map((module) => ({ module, mainThreadCpuMs: [] as number[], processCpuMs: [] as number[], eventLoopUtilization: [] as number[], wallMs: [] as number[] }));
  for (let r = 0; r < rounds; r++) {
    for (const [i, v] of verify.entries()) {
      const cpu0 = process.cpuUsage();
      const main0 = mainThreadCpuMs();
      const elu0 = performance.eventLoopUtilization();
      const t0 = performance.now();
      await v([plan as unknown as ImagePlan], new Set());
      const res = results[i]!;
      res.wallMs.push(Math.round(performance.now() - t0));
      res.mainThreadCpuMs.push(mainThreadCpuMs() - main0);
      const cpu = process.cpuUsage(cpu0);
      res.processCpuMs.push(Math.round((cpu.user + cpu.system) / 1000));
      res.eventLoopUtilization.push(Number(performance.eventLoopUtilization(elu0).utilization.toFixed(3)));
    }
  }
  console.log(JSON.stringify({ layer: file, bytes: size, rounds, results }, null, 2));
}

await main();
