/**
 * Two processes with one image store open (a `--root` shared by two containerd namespaces, or by
 * the embedded backend and a containerd one: the cache's lock is per namespace, the image store is
 * per root): opening the store removes the work directories of imports whose process is gone (and
 * those of versions that did not name the process), and keeps the one of a live process's import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import { openEmbeddedBackend } from '@buildcache/snapshot';

const worker = join(dirname(fileURLToPath(import.meta.url)), 'hold-worker.js');

/** The pid of a process that has exited. */
async function gonePid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((res) => child.on('exit', res));
  return child.pid!;
}

test("opening an image store another process has open keeps that process's import work; a dead process's goes", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-images-owners-'));
  const shared = join(dir, 'images');
  const tmp = join(shared, 'tmp');
  const logger = pino({ level: 'silent' });
  const child = spawn(process.execPath, [worker, join(dir, 'a'), shared], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise((res) => child.on('exit', res));
  const backend = await openEmbeddedBackend({ root: join(dir, 'b', 'backend'), snapshotter: 'native', logger });
  const cache = await CacheManager.open({ root: join(dir, 'b', 'cache'), backend, logger });
  const layers = await LayerStore.open({ cache, root: join(dir, 'b', 'layers') });
  try {
    let live: string | undefined;
    while (live === undefined) {
      assert.equal(child.exitCode, null, `the importing process runs until killed: ${stderr}`);
      live = (await readdir(tmp).catch(() => []))[0]; // the child's import work, the only entry yet
      if (live === undefined) await new Promise((res) => setTimeout(res, 20));
    }
    const dead = `import-${await gonePid()}-x1y2z3`;
    await mkdir(join(tmp, dead));
    await mkdir(join(tmp, 'import-Ab12Cd')); // named by a version before the pid was in the name
    const images = await ImageStore.open({ layers, root: shared, logger });
    assert.deepEqual(await readdir(tmp), [live], "the live import's work stays; the dead process's and the unnamed one go");
    await images.close();
    child.kill('SIGKILL');
    await exited;
    const again = await ImageStore.open({ layers, root: shared, logger });
    assert.deepEqual(await readdir(tmp), [], 'once its process is gone, its work goes too');
    await again.close();
  } finally {
    child.kill('SIGKILL');
    await exited;
    await layers.close();
    await cache.close();
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
});
