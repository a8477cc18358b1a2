/** `buildcache demo`: builds a small chain of cache records the way a build frontend does, then exports it. */
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheManager, MutableRef } from '@buildcache/cache';
import type { Output } from './terminal.js';
import { formatSize } from './units.js';

async function writeLayer(ref: MutableRef, files: Record<string, string>, remove: string[] = []): Promise<void> {
  const m = await ref.mount();
  try {
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(m.target, path, '..'), { recursive: true });
      await writeFile(join(m.target, path), text);
    }
    for (const path of remove) await rm(join(m.target, path), { force: true, recursive: true });
  } finally {
    await m.unmount();
  }
}

/**
 * Runs the demo build: base layer → app layer → export as gzip layer blobs; prints what it did.
 * Every handle is released, also on failure (what was not finalized then goes with it).
 */
export async function demo(cache: CacheManager, out: Output): Promise<void> {
  const stamp = new Date().toISOString();
  const held: { release(): Promise<void> }[] = [];
  const hold = <T extends { release(): Promise<void> }>(ref: T): T => (held.push(ref), ref);
  try {
    out.write('building a two-layer chain:\n');
    const baseM = hold(await cache.new(undefined, { description: 'demo: base layer' }));
    await writeLayer(baseM, {
      'etc/os-release': 'NAME=demo\n',
      'etc/motd': `built ${stamp}\n`,
      'usr/share/doc/README': 'a file the next layer removes\n',
    });
    held.pop(); // commit consumes the mutable handle
    const base = hold(await baseM.commit());
    out.write(`  base  ${base.id}\n`);

    const appM = hold(await cache.new(base, { description: 'demo: app layer' }));
    await writeLayer(appM, { 'app/main.js': "console.log('hello from the cache');\n", 'etc/motd': `app ${stamp}\n` }, [
      'usr/share/doc/README',
    ]);
    held.pop();
    const app = hold(await appM.commit());
    out.write(`  app   ${app.id}\n`);

    out.write('exporting (getRemote, gzip):\n');
    const descs = await app.getRemote({ compression: 'gzip' });
    const chain = app.layerChain().map(hold);
    descs.forEach((d, i) => {
      const info = chain[i]!.info();
      out.write(`  layer ${i}: ${d.digest}  ${formatSize(d.size)}\n`);
      out.write(`           diffID  ${info.diffID}\n           chainID ${info.chainID}\n`);
    });
    out.write('\n');
  } finally {
    for (const ref of held.reverse()) await ref.release();
  }
}
