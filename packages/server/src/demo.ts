/** `buildcache demo`: builds a small chain of cache records the way a build frontend does, then exports it. */
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheManager, MutableRef } from '@buildcache/cache';

/** What the demo built: its two records and the chain's layer blobs (base first). */
export interface DemoReport {
  readonly base: string;
  readonly app: string;
  readonly layers: readonly DemoLayer[];
}

/** One exported layer of the demo's chain. */
export interface DemoLayer {
  /** The gzip layer blob. */
  readonly digest: string;
  readonly size: number;
  readonly diffID: string;
  readonly chainID: string;
}

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
 * Runs the demo build: base layer → app layer → export as gzip layer blobs. Every handle is
 * released, also on failure (what was not finalized then goes with it).
 */
export async function demo(cache: CacheManager): Promise<DemoReport> {
  const stamp = new Date().toISOString();
  const held: { release(): Promise<void> }[] = [];
  const hold = <T extends { release(): Promise<void> }>(ref: T): T => (held.push(ref), ref);
  try {
    const baseM = hold(await cache.new(undefined, { description: 'demo: base layer' }));
    await writeLayer(baseM, {
      'etc/os-release': 'NAME=demo\n',
      'etc/motd': `built ${stamp}\n`,
      'usr/share/doc/README': 'a file the next layer removes\n',
    });
    held.pop(); // commit consumes the mutable handle
    const base = hold(await baseM.commit());

    const appM = hold(await cache.new(base, { description: 'demo: app layer' }));
    await writeLayer(appM, { 'app/main.js': "console.log('hello from the cache');\n", 'etc/motd': `app ${stamp}\n` }, [
      'usr/share/doc/README',
    ]);
    held.pop();
    const app = hold(await appM.commit());

    const descs = await app.getRemote({ compression: 'gzip' });
    const chain = app.layerChain().map(hold);
    const layers = descs.map((d, i) => {
      const info = chain[i]!.info();
      return { digest: d.digest, size: d.size, diffID: info.diffID ?? '', chainID: info.chainID ?? '' };
    });
    return { base: base.id, app: app.id, layers };
  } finally {
    for (const ref of held.reverse()) await ref.release();
  }
}
