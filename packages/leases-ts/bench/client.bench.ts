/**
 * Benchmark of @containerd/leases-ts against a private containerd it starts itself (temp config,
 * root, state and socket; stopped by PID): content write and read throughput of a 256 MB blob and
 * the latency of 1,000 sequential Snapshots.stat calls. Prints JSON.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { Client } from '../src/index.js';

const execFileP = promisify(execFile);
const MB = 1024 * 1024;

async function startDaemon(): Promise<{ address: string; stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'leases-ts-bench-'));
  const address = join(dir, 'containerd.sock');
  await writeFile(join(dir, 'config.toml'), [
    'version = 2', `root = "${dir}/root"`, `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]', `  address = "${address}"`, '[ttrpc]', `  address = "${address}.ttrpc"`,
    '[debug]', '  address = ""', '[metrics]', '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]', `  path = "${dir}/opt"`, '',
  ].join('\n'));
  const log = await open(join(dir, 'containerd.log'), 'w');
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      const gone = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await gone;
    }
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
    for (const m of mounts.filter((p) => p.startsWith(dir + '/')).sort((a, b) => b.length - a.length)) {
      await execFileP('umount', ['-l', m]).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const probe = Client.connect({ address, namespace: 'bench' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await probe.version({ timeoutMs: 1000 });
      break;
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        await stop();
        throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await probe.close();
  return { address, stop };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const round = (n: number): number => Math.round(n * 100) / 100;

async function main(): Promise<void> {
  const daemon = await startDaemon();
  const client = Client.connect({ address: daemon.address, namespace: 'bench' });
  try {
    const lease = 'bench-lease';
    await client.leases.create(lease, { 'containerd.io/gc.flat': new Date().toISOString() });
    const leased = client.withLease(lease);

    const size = 256 * MB;
    const data = randomBytes(size);
    const digest = 'sha256:' + createHash('sha256').update(data).digest('hex');
    let t = performance.now();
    await leased.content.writeBlob('bench-blob', data, { expected: digest });
    const writeMs = performance.now() - t;

    t = performance.now();
    const hash = createHash('sha256');
    let read = 0;
    for await (const chunk of leased.content.read(digest)) {
      hash.update(chunk);
      read += chunk.length;
    }
    const readMs = performance.now() - t;
    if (read !== size || 'sha256:' + hash.digest('hex') !== digest) throw new Error('read back mismatch');

    const ss = leased.snapshots('overlayfs');
    await ss.prepare('bench-a');
    await ss.commit('bench-c', 'bench-a');
    for (let i = 0; i < 50; i++) await ss.stat('bench-c'); // warm-up
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      const s = performance.now();
      await ss.stat('bench-c');
      lat.push(performance.now() - s);
    }
    const statTotal = performance.now() - t0;
    lat.sort((a, b) => a - b);

    console.log(JSON.stringify({
      containerd: (await client.version()).version,
      blobBytes: size,
      contentWriteMBps: round(size / MB / (writeMs / 1000)),
      contentReadMBps: round(size / MB / (readMs / 1000)),
      contentWriteMs: round(writeMs),
      contentReadMs: round(readMs),
      snapshotStat: { calls: 1000, p50Ms: round(percentile(lat, 50)), p99Ms: round(percentile(lat, 99)), totalMs: round(statTotal) },
    }, null, 2));
    await client.leases.delete(lease, { sync: true });
  } finally {
    await client.close();
    await daemon.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
