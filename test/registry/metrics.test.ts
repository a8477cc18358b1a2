/** Metrics: registry reads counted by purpose, range requests and resolve latency, exposed as text and on a loopback /metrics listener. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { counter, metricsText, serveMetrics, gauge } from '@buildcache/metrics';
import { RegistryClient, fetchedBytes, rangeRequests, resolveSeconds } from '@buildcache/registry';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { collect, configBlob, manifestBytes, randomBlob } from './helpers.js';

async function value(metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown>; metricName?: string }[] }> }, labels: Record<string, string> = {}, suffix?: string): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter((v) => (suffix === undefined || v.metricName?.endsWith(suffix)) && Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((a, v) => a + v.value, 0);
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

describe('registry metrics', () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient();
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  test('bytes fetched by purpose, range requests and resolve latency are counted', async () => {
    const repo = `${reg.host}/metrics/app`;
    const layer = randomBlob(100_000);
    const config = configBlob();
    await client.pushBlob(repo, layer.descriptor, layer.bytes);
    await client.pushBlob(repo, config.descriptor, config.bytes);
    const m = manifestBytes(config.descriptor, [layer.descriptor]);
    await client.pushManifest(`${repo}:v1`, m.bytes, m.mediaType);

    const before = {
      fg: await value(fetchedBytes, { purpose: 'foreground' }),
      pre: await value(fetchedBytes, { purpose: 'prefetch' }),
      bg: await value(fetchedBytes, { purpose: 'background' }),
      ranges: await value(rangeRequests, { purpose: 'prefetch' }),
      resolves: await value(resolveSeconds, {}, '_count'),
    };
    await client.resolve(`${repo}:v1`);
    await collect(client.fetchBlob(repo, layer.descriptor));
    await client.readAt(repo, layer.descriptor, 0, 1000, { purpose: 'prefetch' });
    await client.readAt(repo, layer.descriptor, 5000, 2000, { purpose: 'prefetch' });
    await collect(client.fetchBlob(repo, config.descriptor, { purpose: 'background' }));

    assert.equal(await value(fetchedBytes, { purpose: 'foreground' }) - before.fg, 100_000);
    assert.equal(await value(fetchedBytes, { purpose: 'prefetch' }) - before.pre, 3000);
    assert.equal(await value(fetchedBytes, { purpose: 'background' }) - before.bg, config.descriptor.size);
    assert.equal(await value(rangeRequests, { purpose: 'prefetch' }) - before.ranges, 2);
    assert.equal(await value(resolveSeconds, {}, '_count') - before.resolves, 1);

    const text = await metricsText();
    assert.match(text, /buildcache_registry_fetched_bytes_total\{purpose="prefetch"\} \d+/);
    assert.match(text, /buildcache_registry_resolve_seconds_bucket/);
  });

  test('other packages add metrics to the same registry; defining one twice returns it', async () => {
    const a = counter({ name: 'buildcache_test_prune_deletions_total', help: 'test counter' });
    const b = counter({ name: 'buildcache_test_prune_deletions_total', help: 'test counter' });
    assert.equal(a, b);
    a.inc(3);
    assert.match(await metricsText(), /buildcache_test_prune_deletions_total 3/);
    assert.throws(() => gauge({ name: 'buildcache_test_prune_deletions_total', help: 'x' }), ErrInvalidArgument);
  });

  test('serveMetrics: GET /metrics on loopback (with the process metrics), 404 elsewhere, non-loopback refused', async () => {
    const server = await serveMetrics('127.0.0.1:0');
    try {
      assert.match(server.address, /^127\.0\.0\.1:\d+$/);
      const res = await httpGet(`http://${server.address}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.body, /# TYPE buildcache_registry_fetched_bytes_total counter/);
      // The serving process's own metrics, among them its event-loop delay.
      assert.match(res.body, /^nodejs_eventloop_lag_max_seconds \d/m);
      assert.match(res.body, /^process_cpu_seconds_total \d/m);
      assert.equal((await httpGet(`http://${server.address}/other`)).status, 404);
    } finally {
      await server.close();
    }
    await assert.rejects(serveMetrics('0.0.0.0:9464'), ErrInvalidArgument);
    await assert.rejects(serveMetrics('9464'), ErrInvalidArgument);
  });
});
