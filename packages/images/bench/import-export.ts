/**
 * Benchmark (JSON): the real Debian minbase layer (made and cached by the tests' fixtures:
 * `test/dist/images/fixtures.js`, so build the tests first) as a one-layer OCI image with a gzip layer:
 * - import (read + check + register) and a plain layer-store register of the same .tar.gz, vs `tar -xzf`;
 * - export of the image (OCI layout) and re-export of the layer tar, in MB/s, vs `cat` of the tar;
 * - peak RSS of this process (VmHWM).
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openCache } from '@buildcache/cache';
import { LayerStore } from '@buildcache/layers';
import { ImageStore } from '../src/index.js';

const run = promisify(execFile);
const fixtures = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/dist/images/fixtures.js');

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const v = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, v];
}

async function drain(it: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of it) n += c.length;
  return n;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'images-bench-'));
  try {
    const { stdout } = await run(process.execPath, [fixtures, dir], { maxBuffer: 1 << 20 });
    const fx = JSON.parse(stdout) as { source: string; tree: string; tarGz: string; tar: string; archive: string };
    const tarBytes = (await stat(fx.tar)).size;

    const out = join(dir, 'tar-x');
    await mkdir(out);
    const [tarXzf] = await timed(() => run('tar', ['--numeric-owner', '-C', out, '-xzf', fx.tarGz]));
    await rm(out, { recursive: true, force: true });

    const { cache, close } = await openCache({ root: join(dir, 'cache') });
    const layers = await LayerStore.open({ cache, root: join(dir, 'layers') });
    const images = await ImageStore.open({ layers, root: join(dir, 'layers', 'images') });
    const [importSeconds, [img]] = await timed(() => images.import(createReadStream(fx.archive)));
    const [exportSeconds, archiveBytes] = await timed(() => drain(images.export(img!.id)));
    const layer = await layers.get(layers.list()[0]!.chainID);
    const [layerSeconds, layerBytes] = await timed(() => drain(layer.tarStream()));
    await layers.release(layer);
    const [catSeconds] = await timed(() => run('sh', ['-c', 'cat "$1" > /dev/null', 'sh', fx.tar]));
    await images.remove(img!.id);

    const plain = await LayerStore.open({ cache, root: join(dir, 'plain-layers') });
    const [registerSeconds, registered] = await timed(() => plain.register(createReadStream(fx.tarGz)));
    await plain.release(registered);
    await plain.close();
    await images.close();
    await layers.close();
    await close();

    const hwm = /VmHWM:\s+(\d+) kB/.exec(await readFile('/proc/self/status', 'utf8'))?.[1];
    const mb = (n: number): number => +(n / 1e6).toFixed(1);
    process.stdout.write(`${JSON.stringify({
      source: `${fx.source} (${fx.tree})`,
      tarMB: mb(tarBytes),
      gzipMB: mb((await stat(fx.tarGz)).size),
      tarXzfSeconds: +tarXzf.toFixed(2),
      importSeconds: +importSeconds.toFixed(2),
      importVsTarXzf: +(importSeconds / tarXzf).toFixed(2),
      registerSeconds: +registerSeconds.toFixed(2),
      registerVsTarXzf: +(registerSeconds / tarXzf).toFixed(2),
      exportArchiveMBps: +(mb(archiveBytes) / exportSeconds).toFixed(1),
      layerReexportMBps: +(mb(layerBytes) / layerSeconds).toFixed(1),
      catMBps: +(mb(tarBytes) / catSeconds).toFixed(1),
      layerBytesEqual: layerBytes === tarBytes,
      peakRssMB: hwm ? +(Number(hwm) / 1024).toFixed(1) : null,
      note: 'ratios are ours / tar (seconds; <1: ours faster); one run, warm page cache',
    })}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
