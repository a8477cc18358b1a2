/**
 * Apply and diff throughput of the backends against GNU tar, in one run on one generated layer
 * (~200 MB: 10k small files plus a few large ones, packed with `tar -czf`):
 * - apply: embedded applier (native, overlayfs), containerd's applier (private daemon; overlayfs,
 *   native) and `tar -xzf` into a temp dir;
 * - diff of the same tree against nothing (gzip): embedded differ, containerd differ, `tar -cz`.
 * MB/s counts uncompressed tar bytes (10^6) per second; `speedVsTar` = tar seconds / these seconds.
 * Prints one JSON object. Usage: node test/dist/bench/apply-compare.js [smallFiles] [largeMB...]
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { pino } from 'pino';
import { MEDIA_TYPE_LAYER_GZIP, openContainerdBackend, openEmbeddedBackend } from '@buildcache/snapshot';
import type { Backend, Descriptor } from '@buildcache/snapshot';
import { startContainerd } from '../harness/containerd.js';
import type { ContainerdInstance } from '../harness/containerd.js';

const execFileP = promisify(execFile);
const logger = pino({ level: 'silent' });

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

/** Bytes that compress about 2:1 (half the 4 KiB blocks random, half repeats). */
function halfCompressible(size: number): Buffer {
  const out = Buffer.alloc(size);
  const block = 4096;
  for (let at = 0; at < size; at += block) {
    const n = Math.min(block, size - at);
    if ((at / block) % 2 === 0 || at === 0) randomBytes(n).copy(out, at);
    else out.copy(out, at, at - block, at - block + n);
  }
  return out;
}

/** The layer tree: `small` files of 1–8 KiB in 100 dirs, plus one large file per entry of `largeMB`. */
async function generateTree(dir: string, small: number, largeMB: readonly number[]): Promise<number> {
  let files = 0;
  for (let i = 0; i < small; i++) {
    const d = join(dir, `d${String(i % 100).padStart(3, '0')}`);
    if (i < 100) await mkdir(d, { recursive: true });
    await writeFile(join(d, `f${i}.txt`), halfCompressible(1024 + ((i * 7919) % 7168)));
    files++;
  }
  await mkdir(join(dir, 'large'), { recursive: true });
  for (const [i, mb] of largeMB.entries()) {
    await writeFile(join(dir, 'large', `blob${i}.bin`), halfCompressible(mb * 1024 * 1024));
    files++;
  }
  return files;
}

/** Size and sha256 of a gzip file's decompressed stream. */
async function uncompressed(path: string): Promise<{ size: number; digest: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path).pipe(createGunzip())) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, digest: `sha256:${hash.digest('hex')}` };
}

async function writeBlob(b: Backend, bytes: Buffer, lease: string): Promise<Descriptor> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const known = await b.content.info(digest).then(() => true, () => false);
  if (!known) {
    const w = await b.content.writer(`bench-${randomBytes(4).toString('hex')}`, { lease, total: bytes.length, expected: digest });
    for (let at = 0; at < bytes.length; at += 4 << 20) await w.write(bytes.subarray(at, at + (4 << 20)));
    await w.commit({ size: bytes.length, expected: digest });
  } else await b.leases.addResource(lease, { type: 'content', id: digest });
  return { mediaType: MEDIA_TYPE_LAYER_GZIP, digest, size: bytes.length };
}

interface Row {
  name: string;
  seconds: number;
  MBps: number;
  speedVsTar: number;
  [extra: string]: unknown;
}

/** Applies the layer on `b`, then diffs the result against nothing; returns both timings. */
async function measure(name: string, b: Backend, gz: Buffer, diffID: string): Promise<{ apply: [number, string]; diff: [number, number] }> {
  const lease = `bench-${randomBytes(4).toString('hex')}`;
  await b.leases.create(lease, {});
  try {
    const desc = await writeBlob(b, gz, lease);
    const mounts = await b.snapshotter.prepare('bench-active', undefined, { lease });
    const [applied, applySeconds] = await timed(() => b.applier.apply(desc, mounts));
    if (applied.digest !== diffID) throw new Error(`${name}: apply gave ${applied.digest}, expected ${diffID}`);
    await b.snapshotter.commit('bench', 'bench-active', { lease });
    const view = await b.snapshotter.view('bench-view', 'bench', { lease });
    const [diff, diffSeconds] = await timed(() => b.differ.compare([], view, { lease, mediaType: MEDIA_TYPE_LAYER_GZIP }));
    return { apply: [applySeconds, applied.digest], diff: [diffSeconds, diff.size] };
  } finally {
    await b.leases.delete(lease, { sync: true }).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const small = Number(process.argv[2] ?? 10_000);
  const largeMB = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [50, 50, 40, 20];
  const work = await mkdtemp(join(tmpdir(), 'bc-bench-apply-'));
  let daemon: ContainerdInstance | undefined;
  try {
    const tree = join(work, 'tree');
    const files = await generateTree(tree, small, largeMB);
    const gzPath = join(work, 'layer.tar.gz');
    const [, tarCzSeconds] = await timed(() => execFileP('tar', ['-czf', gzPath, '-C', tree, '.']));
    const gz = await readFile(gzPath);
    const { size: tarBytes, digest: diffID } = await uncompressed(gzPath);
    const mb = tarBytes / 1e6;

    const out = join(work, 'tar-x');
    await mkdir(out);
    const [, tarXzSeconds] = await timed(() => execFileP('tar', ['-xzf', gzPath, '-C', out]));
    await rm(out, { recursive: true, force: true });

    const row = (name: string, seconds: number, tarSeconds: number, extra: Record<string, unknown> = {}): Row => ({
      name, seconds: +seconds.toFixed(3), MBps: +(mb / seconds).toFixed(1), speedVsTar: +(tarSeconds / seconds).toFixed(2), ...extra,
    });
    const apply: Row[] = [row('tar -xzf', tarXzSeconds, tarXzSeconds)];
    const diff: Row[] = [row('tar -czf', tarCzSeconds, tarCzSeconds, { gzipBytes: gz.length })];

    for (const mode of ['native', 'overlayfs'] as const) {
      const root = join(work, `embedded-${mode}`);
      const b = await openEmbeddedBackend({ root, snapshotter: mode, logger });
      try {
        const r = await measure(`embedded-${mode}`, b, gz, diffID);
        apply.push(row(`embedded-${mode}`, r.apply[0], tarXzSeconds));
        diff.push(row(`embedded-${mode}`, r.diff[0], tarCzSeconds, { gzipBytes: r.diff[1] }));
      } finally {
        await b.close();
      }
    }

    daemon = await startContainerd();
    for (const snapshotter of ['overlayfs', 'native'] as const) {
      const b = await openContainerdBackend({ address: daemon.address, namespace: `bench-${snapshotter}`, snapshotter, logger });
      try {
        const r = await measure(`containerd-${snapshotter}`, b, gz, diffID);
        apply.push(row(`containerd-${snapshotter}`, r.apply[0], tarXzSeconds));
        diff.push(row(`containerd-${snapshotter}`, r.diff[0], tarCzSeconds, { gzipBytes: r.diff[1] }));
      } finally {
        await b.close();
      }
    }

    const cpus = (await readFile('/proc/cpuinfo', 'utf8')).split('\n').filter((l) => l.startsWith('processor')).length;
    console.log(JSON.stringify({
      layer: { files, smallFiles: small, largeMB, tarBytes, gzipBytes: gz.length },
      machine: { cpus, node: process.version },
      note: 'MB/s = uncompressed tar MB (1e6) per second; speedVsTar = GNU tar seconds / these seconds (>1 is faster); warm page cache, one run each',
      apply,
      diff,
    }, null, 2));
  } finally {
    await daemon?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
