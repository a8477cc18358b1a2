/**
 * The real-data benchmarks of @buildcache/sys, on a Debian bookworm minbase rootfs made once with
 * debootstrap and cached (under $BENCH_CACHE, default <tmpdir>/buildcache-bench-cache), in one run:
 * - copyTree vs `cp -a --reflink=auto` of the rootfs (what the native snapshotter's prepare does);
 * - usage vs `du -sb` of the rootfs;
 * - extract of the rootfs as a gzip layer (without /dev's nodes) through the embedded applier (native)
 *   vs `tar -xzf`.
 * Runs alternate between the contenders; medians are reported, ratios are other ÷ ours (>1: ours faster).
 * Prints one JSON object. Usage: node test/dist/bench/debian-rootfs.js [runs=3]
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { pino } from 'pino';
import { MEDIA_TYPE_LAYER_GZIP, openEmbeddedBackend } from '@buildcache/snapshot';
import { copyTree, usage } from '@buildcache/sys';

const execFileP = promisify(execFile);
const CACHE = process.env.BENCH_CACHE ?? join(tmpdir(), 'buildcache-bench-cache');
const ROOTFS = join(CACHE, 'debian-bookworm-minbase');
const LAYER = `${ROOTFS}.tar.gz`;

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The cached rootfs and its gzip layer, made on first use; undefined when debootstrap is missing. */
async function ensureRootfs(): Promise<string | undefined> {
  if (!(await exists(ROOTFS))) {
    const found = await execFileP('sh', ['-c', 'command -v debootstrap']).then(() => true, () => false);
    if (!found) return undefined;
    await mkdir(CACHE, { recursive: true });
    const partial = `${ROOTFS}.partial`;
    await rm(partial, { recursive: true, force: true });
    await execFileP('debootstrap', ['--variant=minbase', 'bookworm', partial, 'http://deb.debian.org/debian'], { maxBuffer: 64 << 20 });
    await rename(partial, ROOTFS);
  }
  if (!(await exists(LAYER))) {
    // without /dev's nodes, as image layers are (the applier refuses device nodes)
    await execFileP('tar', ['--numeric-owner', '--xattrs', '--exclude=./dev/*', '-czf', `${LAYER}.partial`, '-C', ROOTFS, '.']);
    await rename(`${LAYER}.partial`, LAYER);
  }
  return ROOTFS;
}

async function diffIdOf(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path).pipe(createGunzip())) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const rootfs = await ensureRootfs();
  if (!rootfs) {
    console.log(JSON.stringify({ skipped: 'debootstrap is not installed (apt-get install debootstrap)' }));
    return;
  }
  const work = await mkdtemp(join(tmpdir(), 'bc-bench-debian-'));
  try {
    const u = await usage(rootfs);
    const copy: Record<string, number[]> = { copyTree: [], 'cp -a --reflink=auto': [] };
    const walk: Record<string, number[]> = { usage: [], 'du -sb': [] };
    for (let i = 0; i < runs; i++) {
      const a = join(work, `copy-${i}`);
      copy.copyTree!.push(await timed(() => copyTree(rootfs, a)));
      const b = join(work, `cp-${i}`);
      await mkdir(b);
      copy['cp -a --reflink=auto']!.push(await timed(() => execFileP('cp', ['-a', '--reflink=auto', `${rootfs}/.`, b])));
      await rm(a, { recursive: true, force: true });
      await rm(b, { recursive: true, force: true });
      walk.usage!.push(await timed(() => usage(rootfs)));
      walk['du -sb']!.push(await timed(() => execFileP('du', ['-sb', rootfs])));
    }

    const gz = await readFile(LAYER);
    const diffID = await diffIdOf(LAYER);
    const extract: Record<string, number[]> = { 'embedded applier (native)': [], 'tar -xzf': [] };
    const b = await openEmbeddedBackend({ root: join(work, 'embedded'), snapshotter: 'native', logger: pino({ level: 'silent' }) });
    try {
      const lease = 'bench';
      await b.leases.create(lease, {});
      const digest = `sha256:${createHash('sha256').update(gz).digest('hex')}`;
      const w = await b.content.writer('bench-layer', { lease, total: gz.length, expected: digest });
      for (let at = 0; at < gz.length; at += 4 << 20) await w.write(gz.subarray(at, at + (4 << 20)));
      await w.commit({ size: gz.length, expected: digest });
      const desc = { mediaType: MEDIA_TYPE_LAYER_GZIP, digest, size: gz.length };
      for (let i = 0; i < runs; i++) {
        const key = `active-${i}`;
        const mounts = await b.snapshotter.prepare(key, undefined, { lease });
        let got = '';
        extract['embedded applier (native)']!.push(await timed(async () => (got = (await b.applier.apply(desc, mounts)).digest)));
        if (got !== diffID) throw new Error(`apply gave ${got}, expected ${diffID}`);
        await b.snapshotter.remove(key);
        const out = join(work, `tar-x-${i}`);
        await mkdir(out);
        extract['tar -xzf']!.push(await timed(() => execFileP('tar', ['--numeric-owner', '--xattrs', '-xzf', LAYER, '-C', out])));
        await rm(out, { recursive: true, force: true });
      }
    } finally {
      await b.close();
    }

    const summary = (rows: Record<string, number[]>): Record<string, { medianSeconds: number; runs: number[] }> =>
      Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { medianSeconds: +median(v).toFixed(3), runs: v.map((x) => +x.toFixed(3)) }]));
    const ratio = (rows: Record<string, number[]>, ours: string, other: string): number => +(median(rows[other]!) / median(rows[ours]!)).toFixed(2);
    console.log(JSON.stringify({
      rootfs: { path: rootfs, allocatedBytes: u.size, inodes: u.inodes, layerGzipBytes: gz.length },
      machine: { cpus: (await readFile('/proc/cpuinfo', 'utf8')).match(/^processor/gm)?.length, node: process.version },
      note: 'medians of alternated runs, warm page cache; ratio = other seconds / ours (>1: ours faster)',
      treeCopy: { ...summary(copy), ratioVsCp: ratio(copy, 'copyTree', 'cp -a --reflink=auto') },
      usage: { ...summary(walk), ratioVsDu: ratio(walk, 'usage', 'du -sb') },
      extract: { ...summary(extract), speedVsTar: ratio(extract, 'embedded applier (native)', 'tar -xzf') },
    }, null, 2));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
