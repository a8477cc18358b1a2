/**
 * A record prune cannot load because the backend fails (containerd stopped by PID mid-prune, a
 * private daemon of this test's own) is not a record that is gone: the prune fails with the
 * backend's error and deletes nothing of it; once the daemon is back the record loads, with its data.
 * Only a definite "gone" (no metadata, tombstone, its snapshot not found) lets a load clear a record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { BuildcacheError, ErrNotFound } from '@buildcache/errdefs';
import { CacheManager, openContainerdBackend, type Backend } from '@buildcache/cache';
import { startContainerd } from '../harness/containerd.js';
import { readFileOf, untilAnswering, writeFiles } from './helpers.js';

const silent = pino({ level: 'silent' });

test('containerd down when prune loads a record: the prune fails and the record survives', async () => {
  const daemon = await startContainerd();
  const dir = await mkdtemp(join(tmpdir(), 'bc-prune-outage-'));
  const open = (b: Backend): Promise<CacheManager> => CacheManager.open({ root: join(dir, 'cache'), backend: b, logger: silent });
  let backend: Backend | undefined;
  let cache: CacheManager | undefined;
  try {
    backend = await openContainerdBackend({ address: daemon.address, namespace: 'prune-outage', mountRoot: join(dir, 'mounts'), logger: silent });
    cache = await open(backend);
    // A retained mutable record: loading it asks the backend whether its snapshot exists.
    const m = await cache.new(undefined, { retain: true, noUpdateLastUsed: true });
    await writeFiles(m, { 'kept.txt': 'kept' });
    const id = m.id;
    await m.release();
    // Opened again, so that the record is not in memory: the census tells it from its metadata, the batch loads it.
    await cache.close();
    cache = await open(backend);

    let stopped = false;
    const pruning = cache.prune([{ all: true, minFreeSpace: Number.MAX_SAFE_INTEGER }], {
      // Called between the census and the deletions.
      diskStat: async () => {
        if (!stopped) {
          stopped = true;
          await daemon.kill({ hard: true });
        }
        return { total: 1e12, free: 0 };
      },
    });
    const err: unknown = await pruning.then(() => undefined, (e: unknown) => e);
    assert.ok(stopped, 'the daemon was stopped mid-prune');
    assert.ok(err instanceof BuildcacheError, `the prune fails with a typed error (got ${String(err)})`);
    assert.ok(!(err instanceof ErrNotFound), 'not a "not found"');

    await daemon.restart();
    await untilAnswering(backend);
    const again = await cache.getMutable(id);
    assert.equal(await readFileOf(again, 'kept.txt'), 'kept', 'the record survived, with its data');
    await again.release();
    // And after a reopen (nothing tombstoned it).
    await cache.close();
    cache = await open(backend);
    const listed: string[] = [];
    for await (const u of cache.diskUsage()) listed.push(u.id);
    assert.deepEqual(listed, [id]);
  } finally {
    await cache?.close().catch(() => undefined);
    await backend?.close();
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
