/**
 * A process that builds a two-record chain in the cache and adds it to the image store as an image
 * (what `buildcache build -t` does), killing itself (SIGKILL) at the add's `killAt`-th progress
 * event; without `killAt` it adds to the end and prints `events N` and the image ID.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import { openBackendSpec, type BackendSpec } from '../support/backends.js';
import { Stack } from './helpers.js';

const cfg = JSON.parse(process.argv[2]!) as { spec: BackendSpec; dir: string; killAt?: number };

/** A committed record over `parent` holding file `name`. */
async function step(cache: CacheManager, parent: ImmutableRef | undefined, name: string): Promise<ImmutableRef> {
  const m = await cache.new(parent, { description: `step ${name}` });
  const mount = await m.mount();
  try {
    await writeFile(join(mount.target, name), name);
  } finally {
    await mount.unmount();
  }
  return m.commit();
}

const backend = await openBackendSpec(cfg.spec);
const stack = await Stack.open(backend, cfg.dir);
const base = await step(stack.cache, undefined, 'base');
const top = await step(stack.cache, base, 'top');
await base.release();
let events = 0;
const info = await stack.images.add(top, { architecture: 'amd64', os: 'linux', config: { Env: ['BUILT=1'] } }, ['built:v1'], {
  onProgress: () => {
    if (events++ === cfg.killAt) process.kill(process.pid, 'SIGKILL');
  },
});
await top.release();
await stack.close();
await backend.close();
process.stdout.write(`events ${events}\nimage ${info.id}\n`);
