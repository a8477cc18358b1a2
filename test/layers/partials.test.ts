/**
 * A process killed while it rewrote a layer's `layer.json` or a read-write layer's `mount.json`
 * leaves a partial file beside it: opening the layer store removes it (the metadata it left is the
 * whole previous one), and keeps a partial file of a live writer (another process may have the
 * store open).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { LayerStore } from '@buildcache/layers';
import { openEmbeddedBackend } from '@buildcache/snapshot';

const run = promisify(execFile);

/** Starts a process that rewrites each of `files` with one 64 KiB chunk and then never finishes; resolves once every partial file holds the chunk. */
async function stuckWriter(files: readonly string[]): Promise<{ pid: number; kill(): Promise<void> }> {
  const sys = import.meta.resolve('@buildcache/sys');
  const script = `import { writeFileWhole } from ${JSON.stringify(sys)};
    async function* src() { yield Buffer.alloc(65536, 120); await new Promise(() => setInterval(() => {}, 1000)); }
    await Promise.all(${JSON.stringify(files)}.map((f) => writeFileWhole(f, src())));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  const exited = new Promise((res) => child.on('exit', res));
  const kill = async (): Promise<void> => {
    child.kill('SIGKILL');
    await exited;
  };
  try {
    for (const file of files) {
      for (;;) {
        assert.equal(child.exitCode, null, 'the writer runs until killed');
        const dir = join(file, '..');
        const partial = (await readdir(dir)).find((n) => n.startsWith(`${file.slice(dir.length + 1)}.partial-${child.pid}-`));
        if (partial !== undefined && (await stat(join(dir, partial)).catch(() => undefined))?.size === 65536) break;
        await new Promise((res) => setTimeout(res, 20));
      }
    }
  } catch (err) {
    await kill();
    throw err;
  }
  return { pid: child.pid!, kill };
}

test('opening the layer store removes the partial metadata files of killed writers, not a live writer\'s', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-layers-partials-'));
  const logger = pino({ level: 'silent' });
  const backend = await openEmbeddedBackend({ root: join(dir, 'backend'), snapshotter: 'native', logger });
  let cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger });
  let store = await LayerStore.open({ cache, root: join(dir, 'layers') });
  try {
    await mkdir(join(dir, 'src'));
    await writeFile(join(dir, 'src', 'a.txt'), 'a\n');
    await run('tar', ['-C', join(dir, 'src'), '-cf', join(dir, 'a.tar'), 'a.txt']);
    const layer = await store.register([await readFile(join(dir, 'a.tar'))]);
    await store.createRWLayer('c1', layer.chainID);
    const layerDir = join(dir, 'layers', 'layers', layer.chainID.slice('sha256:'.length));
    const mountDir = join(dir, 'layers', 'mounts', 'c1');
    const before = { layer: await readFile(join(layerDir, 'layer.json'), 'utf8'), mount: await readFile(join(mountDir, 'mount.json'), 'utf8') };
    const writer = await stuckWriter([join(layerDir, 'layer.json'), join(mountDir, 'mount.json')]);
    await writer.kill();
    const live = `.partial-${process.pid}-999999`;
    await writeFile(join(layerDir, `layer.json${live}`), 'a live writer');
    await writeFile(join(mountDir, `mount.json${live}`), 'a live writer');
    await store.close();
    await cache.close();
    cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger });
    store = await LayerStore.open({ cache, root: join(dir, 'layers') });
    assert.deepEqual((await readdir(layerDir)).filter((n) => n.startsWith('layer.json')).sort(), ['layer.json', `layer.json${live}`]);
    assert.deepEqual((await readdir(mountDir)).sort(), ['mount.json', `mount.json${live}`]);
    assert.equal(await readFile(join(layerDir, 'layer.json'), 'utf8'), before.layer, 'the killed rewrite left the previous layer.json');
    assert.equal(await readFile(join(mountDir, 'mount.json'), 'utf8'), before.mount);
    assert.deepEqual(store.list().map((m) => [m.chainID, m.refs]), [[layer.chainID, 1]]);
    assert.deepEqual(store.listRWLayers().map((m) => m.name), ['c1']);
  } finally {
    await store.close();
    await cache.close();
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
});
