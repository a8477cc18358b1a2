/**
 * copyTree and usage of the small trees the native snapshotter copies on every prepare in the anchor
 * workload (9 files of 4 KiB), per call. Prints one JSON object. (The Debian rootfs comparison with
 * `cp -a` and `du -sb` is `npm run bench:debian -w @buildcache/tests`.)
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyTree, usage } from '../src/index.js';

async function perCall(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return +((performance.now() - t0) / n).toFixed(3);
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 1000);
  const work = await mkdtemp(join(tmpdir(), 'bc-bench-sys-'));
  try {
    const src = join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < 9; i++) await writeFile(join(src, `file-${i}`), randomBytes(4096));
    const copyMs = await perCall(n, (i) => copyTree(src, join(work, `d${i}`)));
    const usageMs = await perCall(n, (i) => usage(join(work, `d${i}`)));
    console.log(JSON.stringify({ tree: '9 files of 4 KiB', calls: n, copyTreeMsPerCall: copyMs, usageMsPerCall: usageMs }));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
