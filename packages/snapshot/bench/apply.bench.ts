/**
 * Layer apply/diff throughput against GNU tar on the same data, in the same run. Generates a
 * ~200 MB tree (10k small files + a few large ones), makes a gzip layer of it, then times:
 * applyLayer (plain mode) vs `tar -xzf`, and writeDiff+gzip vs `tar -cz`. Prints JSON.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { applyLayer, compressor, writeDiff } from '../src/embedded/archive/index.js';

const execFileP = promisify(execFile);
const SMALL_FILES = Number(process.env.BENCH_SMALL_FILES ?? 10_000);
const LARGE_FILES = 4;
const LARGE_SIZE = 40 << 20;

/** Semi-compressible content: random blocks repeated a few times. */
function content(size: number): Buffer {
  const block = randomBytes(4096);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4096) {
    if (i % (4096 * 4) === 0) randomBytes(4096).copy(block);
    block.copy(out, i, 0, Math.min(4096, size - i));
  }
  return out;
}

async function makeTree(root: string): Promise<number> {
  let total = 0;
  for (let d = 0; d < 100; d++) await mkdir(join(root, `dir${d}`, 'sub'), { recursive: true });
  const writes: Array<Promise<void>> = [];
  for (let i = 0; i < SMALL_FILES; i++) {
    const size = 1024 + ((i * 7919) % 15000);
    total += size;
    writes.push(writeFile(join(root, `dir${i % 100}`, i % 3 ? 'sub' : '', `f${i}.txt`), content(size)));
    if (writes.length >= 64) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  for (let i = 0; i < LARGE_FILES; i++) {
    await writeFile(join(root, `large${i}.bin`), content(LARGE_SIZE));
    total += LARGE_SIZE;
  }
  return total;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

const mbps = (bytes: number, ms: number): number => Math.round((bytes / (1 << 20) / (ms / 1000)) * 10) / 10;

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'bc-bench-apply-'));
  try {
    const tree = join(base, 'tree');
    await mkdir(tree);
    const dataBytes = await makeTree(tree);
    await execFileP('sync');

    // our diff + gzip → blob
    const blob = join(base, 'layer.tar.gz');
    const ours = await timed(async () => {
      const gz = compressor('gzip');
      const out = pipeline(gz, createWriteStream(blob));
      const r = await writeDiff({ kind: 'trees', upper: tree }, async (chunk) => {
        if (!gz.write(chunk)) await new Promise((res) => gz.once('drain', res));
      });
      gz.end();
      await out;
      return r;
    });
    const tarBytes = ours.value.size;
    const gnuCreate = await timed(() => execFileP('sh', ['-c', `tar -C '${tree}' -czf '${join(base, 'gnu.tar.gz')}' .`]));
    const blobSize = (await stat(blob)).size;

    const runs: Array<{ ours: number; tar: number }> = [];
    for (let i = 0; i < 2; i++) {
      const dst = join(base, `dst-ours-${i}`);
      const dstTar = join(base, `dst-tar-${i}`);
      await mkdir(dst);
      await mkdir(dstTar);
      await execFileP('sync');
      const a = await timed(() => applyLayer(createReadStream(blob, { highWaterMark: 1 << 20 }), dst, { compression: 'gzip' }));
      const t = await timed(() => execFileP('tar', ['-xzf', blob, '-C', dstTar]));
      runs.push({ ours: a.ms, tar: t.ms });
      await rm(dst, { recursive: true, force: true });
      await rm(dstTar, { recursive: true, force: true });
    }
    const best = { ours: Math.min(...runs.map((r) => r.ours)), tar: Math.min(...runs.map((r) => r.tar)) };
    const result = {
      files: SMALL_FILES + LARGE_FILES,
      dataMB: Math.round(dataBytes / (1 << 20)),
      tarMB: Math.round(tarBytes / (1 << 20)),
      gzipMB: Math.round(blobSize / (1 << 20)),
      apply: {
        oursMs: Math.round(best.ours),
        tarMs: Math.round(best.tar),
        oursMBps: mbps(tarBytes, best.ours),
        tarMBps: mbps(tarBytes, best.tar),
        ratioToTar: Math.round((best.tar / best.ours) * 100) / 100,
      },
      diff: {
        oursMs: Math.round(ours.ms),
        tarMs: Math.round(gnuCreate.ms),
        oursMBps: mbps(tarBytes, ours.ms),
        tarMBps: mbps(tarBytes, gnuCreate.ms),
        ratioToTar: Math.round((gnuCreate.ms / ours.ms) * 100) / 100,
      },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

await main();
