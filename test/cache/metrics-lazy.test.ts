/**
 * A process that uses the cache without reading its metrics never loads prom-client (its code is
 * ~1 MiB of heap that every later collection keeps and scales): records are counted all the same,
 * and the counts show up once the metrics are read. Runs in its own process (node's test runner
 * gives each file one), so nothing else has loaded prom-client before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { counter, gauge, metricsText } from '@buildcache/metrics';

const require = createRequire(import.meta.url);

/** How many of prom-client's modules this process has loaded. */
const promModules = (): number => Object.keys(require.cache).filter((p) => p.includes('/node_modules/prom-client/')).length;

/** The value of `name{labels}` in the exposition text (0 when absent). */
function value(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('creating, listing and pruning records loads no prom-client; the counts appear when metrics are read', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bc-metrics-lazy-'));
  const { cache, close } = await openCache({ root, logger: pino({ level: 'silent' }) });
  try {
    for (let i = 0; i < 3; i++) {
      const ref = await cache.new(undefined, { description: `lazy metrics ${i}`, retain: true });
      const m = await ref.mount();
      await writeFile(join(m.target, 'f'), randomBytes(1000));
      await m.unmount();
      await (await ref.commit()).release();
    }
    let rows = 0;
    for await (const _ of cache.diskUsage()) rows++;
    assert.equal(rows, 3);
    assert.equal((await cache.prune([{ all: true }])).deleted, 3);
    // Gauges keep their series too; bad updates are refused before anything is kept.
    const g = gauge<'k'>({ name: 'buildcache_test_lazy_gauge', help: 'test gauge', labelNames: ['k'] });
    g.set({ k: 'a' }, 5);
    g.inc({ k: 'a' });
    g.dec({ k: 'a' }, 2);
    g.inc();
    assert.throws(() => g.inc({ other: 'x' } as never), ErrInvalidArgument);
    assert.throws(() => counter({ name: 'buildcache_test_lazy_gauge', help: 'x' }), ErrInvalidArgument);
    const c = counter({ name: 'buildcache_test_lazy_total', help: 'test counter' });
    assert.throws(() => c.inc(-1), ErrInvalidArgument);
    assert.throws(() => c.inc(Number.NaN), ErrInvalidArgument);
    assert.equal(promModules(), 0, 'prom-client was loaded by using the cache');

    const text = await metricsText();
    assert.ok(promModules() > 0, 'reading the metrics loads prom-client');
    assert.equal(value(text, 'buildcache_cache_records_created_total', '{kind="mutable"}'), 3);
    assert.equal(value(text, 'buildcache_cache_prune_deleted_total'), 3);
    assert.ok(value(text, 'buildcache_cache_prune_reclaimed_bytes_total') >= 3000);
    assert.equal(value(text, 'buildcache_test_lazy_gauge', '{k="a"}'), 4);
    assert.equal(value(text, 'buildcache_test_lazy_gauge'), 1);
    assert.equal(value(text, 'buildcache_test_lazy_total'), 0);

    // From now on counts go straight to prom-client, and a metric defined now is on the registry at once.
    const ref = await cache.new(undefined, { description: 'after the first read', retain: true });
    await (await ref.commit()).release();
    const late = counter({ name: 'buildcache_test_lazy_late_total', help: 'test counter defined after the first read' });
    late.inc(2);
    const after = await metricsText();
    assert.equal(value(after, 'buildcache_cache_records_created_total', '{kind="mutable"}'), 4);
    assert.equal(value(after, 'buildcache_test_lazy_late_total'), 2);
  } finally {
    await close();
    await rm(root, { recursive: true, force: true });
  }
});
