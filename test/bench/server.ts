/**
 * The daemon (issue 17), JSON lines: du of N synthetic records (default 100,000) through the daemon
 * — buildcache's streamed API and BuildKit's one-message DiskUsage — against in-process du (time to
 * first record, total, peak RSS of both ends, each end a fresh process); and the latency of du
 * (time to first record, longest gap between records) while a prune of 10,000 records runs, with
 * the event-loop delay of both ends meanwhile (the daemon's from its `/metrics`), and how late an
 * idle process's timer ran meanwhile (the machine's own share of any gap: on a loaded machine a
 * process that does nothing waits that long too).
 * Usage: node test/dist/bench/server.js [N] | node test/dist/bench/server.js --during-prune
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { openCache } from '@buildcache/cache';
import { connect, PROTO_ROOT } from '@buildcache/server';
import { writeSyntheticRecords } from '../support/synthetic.js';
import { peakRssMiB, resetPeakRss } from '../support/memory.js';

const execFileP = promisify(execFile);
const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');
const self = fileURLToPath(import.meta.url);
const DAY = 24 * 3600_000;
const ms = (t0: number): number => +(performance.now() - t0).toFixed(2);

/** How many gaps between two records were longer than 20, 50 and 100 ms. */
interface GapCounts {
  over20: number;
  over50: number;
  over100: number;
}

/** The lateness of a 5 ms timer in an otherwise idle process, until its stdin closes: the machine's stalls. */
async function idleTimer(): Promise<Record<string, number>> {
  const late: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - last - 5));
    last = now;
  }, 5);
  process.stdin.resume();
  await new Promise((res) => process.stdin.on('end', res));
  clearInterval(timer);
  return { samples: late.length, p99: pct(late, 0.99), max: +Math.max(0, ...late).toFixed(2), over50: late.filter((l) => l > 50).length };
}

/** Starts an idle timer in a fresh process; `stop()` returns its figures. */
function startIdleTimer(): { stop(): Promise<Record<string, number>> } {
  const child = spawn(process.execPath, [self, '--idle-timer'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise((res) => child.on('exit', res));
  return {
    async stop() {
      child.stdin.end();
      await exited;
      return JSON.parse(out) as Record<string, number>;
    },
  };
}

/** One du, timed: first record and total, and the longest gap between two records. */
async function timed(entries: AsyncIterable<unknown>): Promise<{ count: number; firstMs: number; totalMs: number; maxGapMs: number; gaps: GapCounts }> {
  const t0 = performance.now();
  let last = t0;
  let firstMs = -1;
  let maxGapMs = 0;
  let count = 0;
  const gaps: GapCounts = { over20: 0, over50: 0, over100: 0 };
  for await (const _ of entries) {
    const now = performance.now();
    if (count++ === 0) firstMs = ms(t0);
    else {
      maxGapMs = Math.max(maxGapMs, now - last);
      if (now - last > 20) gaps.over20++;
      if (now - last > 50) gaps.over50++;
      if (now - last > 100) gaps.over100++;
    }
    last = now;
  }
  return { count, firstMs, totalMs: ms(t0), maxGapMs: +maxGapMs.toFixed(2), gaps };
}

/** BuildKit's Control/DiskUsage (one message with every record), as `buildctl du` calls it. */
async function buildkitDu(address: string): Promise<{ count: number; totalMs: number }> {
  const m = (loadSync('github.com/moby/buildkit/api/services/control/control.proto', { keepCase: true, longs: String, defaults: true, includeDirs: [PROTO_ROOT] })[
    'moby.buildkit.v1.Control'
  ] as Record<string, MethodDefinition<object, object>>)['DiskUsage']!;
  const client = new Client(address.replace('unix://', 'unix:'), credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 });
  const t0 = performance.now();
  const res = await new Promise<{ record: unknown[] }>((ok, fail) =>
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, new Metadata(), (e, v) => (e ? fail(e) : ok(v as { record: unknown[] }))),
  );
  const totalMs = ms(t0);
  client.close();
  return { count: res.record.length, totalMs };
}

/** A measurement in this fresh process: `inproc ROOT`, `client ADDR` or `buildkit ADDR`. */
async function measure(mode: string, target: string): Promise<Record<string, unknown>> {
  await resetPeakRss();
  if (mode === 'inproc') {
    const { cache, close } = await openCache({ root: target, logger: pino({ level: 'silent' }) });
    const r = await timed(cache.diskUsage());
    await close();
    return { ...r, peakRssMiB: await peakRssMiB() };
  }
  if (mode === 'buildkit') return { ...(await buildkitDu(target)), peakRssMiB: await peakRssMiB() };
  const client = connect(target);
  // Connected and protos loaded before the clock starts (an empty hold costs the daemon nothing).
  await (await client.hold({})).release();
  const r = await timed(client.diskUsage());
  client.close();
  return { ...r, peakRssMiB: await peakRssMiB() };
}

async function inChild(mode: string, target: string): Promise<Record<string, unknown>> {
  const { stdout } = await execFileP(process.execPath, [self, '--measure', mode, target]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Starts `buildcache serve` on `root` (with `/metrics` on a free loopback port); returns its address, pid, metrics address and stop. */
async function serve(root: string, dir: string): Promise<{ address: string; pid: number; metrics: string; stop(): Promise<void> }> {
  const address = `unix://${join(dir, 'bc.sock')}`;
  const child = spawn(process.execPath, [cli, '--root', root, 'serve', '--addr', address, '--metrics', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((res) => child.on('exit', res));
  const metrics = await new Promise<string>((res, rej) => {
    let log = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      const ready = log.split('\n').find((l) => l.includes('"serving the cache"'));
      if (ready) res((JSON.parse(ready) as { metrics: string }).metrics);
    });
    void exited.then(() => rej(new Error(`daemon exited: ${log}`)));
  });
  return {
    address,
    pid: child.pid!,
    metrics,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The event-loop samplers' interval (prom-client's in the daemon, this process's own), in ms. */
const LOOP_RESOLUTION_MS = 10;

/** How late a timer sample of `ms` (which includes the sampling interval) ran: time the loop was held. */
const lateMs = (ms: number): number => +Math.max(0, ms - LOOP_RESOLUTION_MS).toFixed(2);

/**
 * How long the daemon's event loop was held since the previous scrape (prom-client resets its
 * sampler on each), in ms: one scrape before a phase and one after it give the phase's figures.
 */
async function daemonLoopDelay(metrics: string): Promise<{ p50: number; p99: number; max: number }> {
  const text = await (await fetch(`http://${metrics}/metrics`)).text();
  const get = (name: string): number => lateMs(Number(new RegExp(`^nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(text)![1]) * 1000);
  return { p50: get('p50'), p99: get('p99'), max: get('max') };
}

const daemonPeak = async (pid: number): Promise<number> => {
  const { readFile } = await import('node:fs/promises');
  return Math.round(Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);
};

async function duThroughDaemon(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bc-bench-serve-'));
  try {
    await writeSyntheticRecords(join(dir, 'metadata'), n);
    const inproc = await inChild('inproc', dir);
    const daemon = await serve(dir, dir);
    try {
      await writeFile(`/proc/${daemon.pid}/clear_refs`, '5');
      const cold = await inChild('client', daemon.address);
      const coldDaemonPeak = await daemonPeak(daemon.pid);
      const warm = await inChild('client', daemon.address);
      const buildkit = await inChild('buildkit', daemon.address);
      process.stdout.write(
        JSON.stringify({
          bench: 'du-through-daemon', n, inProcess: inproc,
          daemonCold: { client: cold, daemonPeakRssMiB: coldDaemonPeak },
          daemonWarm: { client: warm },
          buildkitDiskUsageWarm: { client: buildkit, daemonPeakRssMiB: await daemonPeak(daemon.pid) },
        }) + '\n',
      );
    } finally {
      await daemon.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const pct = (xs: number[], p: number): number => +[...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!.toFixed(2);

/** du after du from one client while another prunes `pruned` of `2 × pruned` records. */
async function duDuringPrune(pruned: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bc-bench-serve-'));
  const now = Date.now();
  try {
    await writeSyntheticRecords(join(dir, 'metadata'), 2 * pruned, (i) => (i < pruned ? { lastUsedAt: now - 3 * DAY } : {}));
    const daemon = await serve(dir, dir);
    const reader = connect(daemon.address);
    const pruner = connect(daemon.address);
    try {
      await timed(reader.diskUsage()); // loads every record: the calls below are warm, as during the prune
      const baseline = [];
      for (let i = 0; i < 3; i++) baseline.push(await timed(reader.diskUsage()));
      const during: Awaited<ReturnType<typeof timed>>[] = [];
      let running = true;
      await daemonLoopDelay(daemon.metrics);
      const machine = startIdleTimer();
      const ownLoop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      ownLoop.enable();
      const t0 = performance.now();
      const prune = pruner.prune([{ keepDurationMs: 2 * DAY }]).finally(() => (running = false));
      while (running) during.push(await timed(reader.diskUsage()));
      const result = await prune;
      ownLoop.disable();
      const machineStallMs = await machine.stop();
      const daemonLoop = await daemonLoopDelay(daemon.metrics);
      const loopMs = (q: number): number => lateMs(ownLoop.percentile(q) / 1e6);
      const first = during.map((d) => d.firstMs);
      const gaps = during.map((d) => d.maxGapMs);
      process.stdout.write(
        JSON.stringify({
          bench: 'du-during-prune', records: 2 * pruned, pruned: result.deleted, pruneMs: ms(t0),
          duCallsDuringPrune: during.length,
          firstRecordMs: { p50: pct(first, 0.5), p99: pct(first, 0.99), max: Math.max(...first) },
          maxGapBetweenRecordsMs: { p50: pct(gaps, 0.5), p99: pct(gaps, 0.99), max: Math.max(...gaps) },
          gapsBetweenRecords: {
            count: during.reduce((n, d) => n + Math.max(0, d.count - 1), 0),
            over20Ms: during.reduce((n, d) => n + d.gaps.over20, 0),
            over50Ms: during.reduce((n, d) => n + d.gaps.over50, 0),
            over100Ms: during.reduce((n, d) => n + d.gaps.over100, 0),
          },
          duTotalMs: { p50: pct(during.map((d) => d.totalMs), 0.5), max: Math.max(...during.map((d) => d.totalMs)) },
          withoutPrune: { firstRecordMs: Math.max(...baseline.map((b) => b.firstMs)), maxGapMs: Math.max(...baseline.map((b) => b.maxGapMs)) },
          // How long each process's event loop was held during the prune (timer lateness, sampled every 10 ms).
          eventLoopDelayMs: { daemon: daemonLoop, client: { p50: loopMs(50), p99: loopMs(99), max: lateMs(ownLoop.max / 1e6) } },
          // How late a 5 ms timer ran in an idle process meanwhile: gaps this long are the machine's.
          machineStallMs,
          goal: 'no wait > 50 ms',
        }) + '\n',
      );
    } finally {
      reader.close();
      pruner.close();
      await daemon.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === '--measure') {
    process.stdout.write(JSON.stringify(await measure(process.argv[3]!, process.argv[4]!)) + '\n');
    return;
  }
  if (process.argv[2] === '--idle-timer') {
    process.stdout.write(JSON.stringify(await idleTimer()) + '\n');
    return;
  }
  if (process.argv[2] !== '--during-prune') await duThroughDaemon(Number(process.argv[2] ?? 100_000));
  await duDuringPrune(10_000);
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err) + '\n');
  process.exit(1);
});
