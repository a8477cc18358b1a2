/**
 * Benchmark (JSON): a build context of 10,000 files / 200 MB (100 directories, made under the
 * temp dir): `checksumDir` vs `find … -type f -print0 | xargs -0 sha256sum`; then the same tree in
 * a cache record on the embedded backend: `checksum(ref, '/')` cold (computed and kept), warm
 * (the kept checksums, after reopening the cache: one metadata read) and of one file, warm.
 * `BENCH_FILES` / `BENCH_BYTES` change the size. Page cache is warm for all (the tree was just written).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openCache } from '@buildcache/cache';
import { checksum, checksumDir } from '../src/index.js';

const run = promisify(execFile);
const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [seconds(t0), v];
}

async function main(): Promise<void> {
  const files = Number(process.env['BENCH_FILES'] ?? 10_000);
  const bytes = Number(process.env['BENCH_BYTES'] ?? 200e6);
  const dirs = 100;
  const per = Math.max(1, Math.floor(bytes / files));
  const dir = await mkdtemp(join(tmpdir(), 'contenthash-bench-'));
  try {
    const ctx = join(dir, 'context');
    const chunk = randomBytes(per * 2);
    for (let d = 0; d < dirs; d++) await mkdir(join(ctx, `d${d}`), { recursive: true });
    for (let i = 0; i < files; i++) {
      const off = i % per;
      await writeFile(join(ctx, `d${i % dirs}`, `f${i}`), Buffer.concat([Buffer.from(String(i)), chunk.subarray(off, off + per)]));
    }
    const [sha256sumSeconds] = await timed(() =>
      run('sh', ['-c', `find '${ctx}' -type f -print0 | xargs -0 sha256sum > /dev/null`], { maxBuffer: 1 << 20 }),
    );
    const [dirSeconds, dirDigest] = await timed(() => checksumDir(ctx));
    const rssAfterDir = process.memoryUsage().rss;

    const root = join(dir, 'cache');
    let opened = await openCache({ root });
    const m = await opened.cache.new(undefined, { retain: true });
    const mnt = await m.mount();
    await run('cp', ['-a', `${ctx}/.`, mnt.target]);
    await mnt.unmount();
    const committed = await m.commit();
    await committed.finalize();
    const id = committed.id;
    const [recordColdSeconds, recordDigest] = await timed(() => checksum(committed, '/'));
    await committed.release();
    await opened.close();
    opened = await openCache({ root });
    const ref = await opened.cache.get(id);
    const [recordWarmSeconds, warmDigest] = await timed(() => checksum(ref, '/'));
    const [fileWarmSeconds] = await timed(() => checksum(ref, 'd7/f7'));
    await ref.release();
    await opened.close();
    process.stdout.write(
      JSON.stringify({
        benchmark: 'contenthash',
        files,
        bytes: files * per,
        sha256sumSeconds,
        checksumDirSeconds: dirSeconds,
        checksumDirVsSha256sum: dirSeconds / sha256sumSeconds,
        rssAfterChecksumDirMB: Math.round(rssAfterDir / 1e6),
        recordColdSeconds,
        recordWarmSeconds,
        recordFileWarmSeconds: fileWarmSeconds,
        sameDigestHostAndRecord: dirDigest === recordDigest && recordDigest === warmDigest,
      }) + '\n',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
