/**
 * Benchmark (JSON): register a real rootfs layer (tar.gz) into a layer store on the embedded backend
 * vs `tar -xzf` of the same file on the same disk; re-export throughput vs `cat` of the tar; peak RSS.
 * `LAYER_TAR_GZ=<file>` picks the layer; default: a gzip tar of /usr/share/doc made in a temp dir.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openCache } from '@buildcache/cache';
import { LayerStore } from '../src/index.js';

const run = promisify(execFile);
const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'layers-bench-'));
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

    const out = join(dir, 'tar-x');
    await mkdir(out);
    let t0 = process.hrtime.bigint();
    await run('tar', ['-C', out, '-xzf', gz]);
    const tarSeconds = seconds(t0);
    await rm(out, { recursive: true, force: true });

    const { cache, close } = await openCache({ root: join(dir, 'cache') });
    const store = await LayerStore.open({ cache, root: join(dir, 'layers') });
    t0 = process.hrtime.bigint();
    const layer = await store.register(createReadStream(gz));
    const registerSeconds = seconds(t0);

    t0 = process.hrtime.bigint();
    let n = 0;
    for await (const c of layer.tarStream()) n += c.length;
    const exportSeconds = seconds(t0);
    t0 = process.hrtime.bigint();
    await run('sh', ['-c', `cat '${tar}' > /dev/null`]);
    const catSeconds = seconds(t0);
    await store.release(layer);
    await store.close();
    await close();
    process.stdout.write(`${JSON.stringify({
      source,
      tarMB: +(tarBytes / 1e6).toFixed(1),
      gzipMB: +((await stat(gz)).size / 1e6).toFixed(1),
      registerSeconds: +registerSeconds.toFixed(2),
      tarXzfSeconds: +tarSeconds.toFixed(2),
      speedVsTar: +(tarSeconds / registerSeconds).toFixed(2),
      exportMBps: +(n / 1e6 / exportSeconds).toFixed(1),
      catMBps: +(tarBytes / 1e6 / catSeconds).toFixed(1),
      exportBytesEqual: n === tarBytes,
      peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
    })}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
