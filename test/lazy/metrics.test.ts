/**
 * The metrics a daemon's /metrics shows for the cache and lazy layers: records created (by kind),
 * prune deletions and reclaimed bytes, and lazy reads served locally (cache hits) or fetched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { fileRangeReader } from '@buildcache/estargz';
import { Priority, SparseBlob } from '@buildcache/lazy';
import { metricsText } from '@buildcache/metrics';

/** The value of `name{labels}` in the exposition text (0 when absent). */
async function value(name: string, labels = ''): Promise<number> {
  const line = (await metricsText()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('records created and pruned are counted; a dry run counts nothing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bc-metrics-'));
  const { cache, close } = await openCache({ root, logger: pino({ level: 'silent' }) });
  try {
    const created = await value('buildcache_cache_records_created_total', '{kind="mutable"}');
    const deleted = await value('buildcache_cache_prune_deleted_total');
    for (let i = 0; i < 3; i++) {
      const ref = await cache.new(undefined, { description: `metrics ${i}`, retain: true });
      const m = await ref.mount();
      await writeFile(join(m.target, 'f'), randomBytes(1000));
      await m.unmount();
      await (await ref.commit()).release();
    }
    assert.equal(await value('buildcache_cache_records_created_total', '{kind="mutable"}'), created + 3);
    await cache.prune([{ all: true }], { dryRun: true });
    assert.equal(await value('buildcache_cache_prune_deleted_total'), deleted);
    const result = await cache.prune([{ all: true }]);
    assert.equal(result.deleted, 3);
    assert.equal(await value('buildcache_cache_prune_deleted_total'), deleted + 3);
    assert.ok((await value('buildcache_cache_prune_reclaimed_bytes_total')) >= 3000);
  } finally {
    await close();
    await rm(root, { recursive: true, force: true });
  }
});

test('a lazy read of bytes already fetched counts as a local hit, the first one as remote', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-metrics-'));
  const data = randomBytes(64 * 1024);
  await writeFile(join(dir, 'blob'), data);
  const remote = await fileRangeReader(join(dir, 'blob'));
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const blob = await SparseBlob.create(digest, remote, join(dir, 'sparse'), new Priority());
  try {
    const [local, fetched] = [await value('buildcache_lazy_reads_total', '{source="local"}'), await value('buildcache_lazy_reads_total', '{source="remote"}')];
    assert.deepEqual(await blob.readAt(100, 200), data.subarray(100, 300));
    assert.deepEqual(await blob.readAt(150, 100), data.subarray(150, 250));
    assert.equal(await value('buildcache_lazy_reads_total', '{source="remote"}'), fetched + 1);
    assert.equal(await value('buildcache_lazy_reads_total', '{source="local"}'), local + 1);
  } finally {
    await blob.dispose();
    await remote.close();
    await rm(dir, { recursive: true, force: true });
  }
});
