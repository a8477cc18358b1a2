/**
 * A backend that fails during a deletion (containerd stopped by PID mid-test, a private daemon of
 * this test's own): the release still succeeds, the deletion stays queued, and the next prune after
 * the daemon is back finishes it — nothing of the record is left unseen until the next open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ErrNotFound } from '@buildcache/errdefs';
import { CacheManager, openContainerdBackend, type Backend } from '@buildcache/cache';
import { startContainerd } from '../harness/containerd.js';
import { readFileOf, untilAnswering, writeFiles } from './helpers.js';

const silent = pino({ level: 'silent' });

test('containerd down during release: the release succeeds and the next prune finishes the deletion', async () => {
  const daemon = await startContainerd();
  const dir = await mkdtemp(join(tmpdir(), 'bc-outage-'));
  let backend: Backend | undefined;
  let cache: CacheManager | undefined;
  try {
    backend = await openContainerdBackend({ address: daemon.address, namespace: 'outage', mountRoot: join(dir, 'mounts'), logger: silent });
    cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger: silent });
    const pm = await cache.new(undefined, { description: 'kept parent' });
    await writeFiles(pm, { 'p.txt': 'parent' });
    const parent = await pm.commit();
    await parent.finalize();
    const m = await cache.new(parent);
    await writeFiles(m, { 'c.txt': 'child' });
    const child = await m.commit();
    const leasesBefore = (await backend.leases.list()).map((l) => l.id).sort();

    await daemon.kill({ hard: true });
    await child.release(); // a committed, never finalized, not retained record goes with its mutable twin
    await assert.rejects(cache.get(child.id), ErrNotFound, 'the released record is gone for callers');
    await assert.rejects(cache.getMutable(m.id), ErrNotFound, 'so is its mutable twin');

    await daemon.restart();
    await untilAnswering(backend);
    assert.ok((await backend.leases.list()).some((l) => l.id === m.id), "the mutable twin's lease outlived the outage");
    await cache.prune([{ filters: ['id==nothing-matches-this'] }]);
    const leasesAfter = (await backend.leases.list()).map((l) => l.id);
    assert.deepEqual(leasesAfter, leasesBefore.filter((id) => id !== m.id && id !== child.id), 'the prune deleted the leases the release could not');
    const snapshots: string[] = [];
    for await (const s of backend.snapshotter.walk()) snapshots.push(s.name);
    assert.ok(!snapshots.includes(m.id), "and GC removed the twin's snapshot");
    const listed: string[] = [];
    for await (const u of cache.diskUsage()) listed.push(u.id);
    assert.deepEqual(listed, [parent.id]);
    assert.equal(await readFileOf(parent, 'p.txt'), 'parent', 'the parent is untouched');
    await parent.release();

    await cache.close();
    cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger: silent });
    const reopened: string[] = [];
    for await (const u of cache.diskUsage()) reopened.push(u.id);
    assert.deepEqual(reopened, [parent.id], 'nothing of the deleted records is left in the metadata');
  } finally {
    await cache?.close().catch(() => undefined);
    await backend?.close();
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
