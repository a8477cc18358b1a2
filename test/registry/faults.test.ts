/**
 * Faults between the client and a real docker-registry 2.8, injected by a loopback proxy: 5xx
 * then success, connections cut mid-blob, corrupted bodies, resets, a proxy that is gone. Safe
 * requests are retried, uploads restart cleanly, corrupt content is never returned as good.
 */
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrDigestMismatch, ErrUnavailable } from '@buildcache/errdefs';
import { RegistryClient } from '@buildcache/registry';
import { startFaultProxy, startRegistry, type FaultProxy, type TestRegistry } from '../support/registry.js';
import { collect, configBlob, manifestBytes, randomBlob } from './helpers.js';

describe('registry faults through a proxy', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let client: RegistryClient;
  let direct: RegistryClient;
  let dir: string;
  const layer = randomBlob(400_000);
  const config = configBlob();
  const m = manifestBytes(config.descriptor, [layer.descriptor]);
  let repo: string;

  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.url);
    dir = await mkdtemp(join(tmpdir(), 'bc-registry-faults-'));
    client = new RegistryClient({ retries: 3, retryDelayMs: 5 });
    direct = new RegistryClient();
    repo = `${proxy.host}/faults/app`;
    const straight = `${reg.host}/faults/app`;
    await direct.pushBlob(straight, layer.descriptor, layer.bytes);
    await direct.pushBlob(straight, config.descriptor, config.bytes);
    await direct.pushManifest(`${straight}:v1`, m.bytes, m.mediaType);
  });
  beforeEach(() => {
    proxy.clear();
    proxy.log.length = 0;
  });
  after(async () => {
    await client?.close();
    await direct?.close();
    await proxy?.stop();
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('500 then 200: manifest GET, blob HEAD and range GET are retried and succeed', async () => {
    proxy.inject({ method: 'GET', path: /\/manifests\//, times: 2, fault: { kind: 'status', status: 500 } });
    proxy.inject({ method: 'HEAD', path: /\/blobs\//, fault: { kind: 'status', status: 503 } });
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'reset' } });
    const img = await client.resolve(`${repo}:v1`);
    assert.equal(img.descriptor.digest, m.digest);
    assert.equal((await client.headBlob(repo, layer.descriptor.digest)).size, layer.descriptor.size);
    assert.ok((await client.readAt(repo, layer.descriptor, 1000, 5000)).equals(layer.bytes.subarray(1000, 6000)));
    const manifestGets = proxy.log.filter((e) => e.method === 'GET' && e.path.includes('/manifests/'));
    assert.deepEqual(manifestGets.map((e) => e.status), [500, 500, 200]);
  });

  test('a server that keeps failing: ErrUnavailable naming the reference, after the retries', async () => {
    proxy.inject({ path: /\/manifests\//, times: 100, fault: { kind: 'status', status: 502 } });
    await assert.rejects(client.getManifest(`${repo}:v1`), (err: unknown) => {
      assert.ok(err instanceof ErrUnavailable, String(err));
      assert.match(err.message, /faults\/app:v1/);
      assert.equal(err.details.status, 502);
      return true;
    });
    assert.equal(proxy.log.length, 4, 'one try and 3 retries');
  });

  test('connection cut mid-blob: the stream resumes with a Range request and verifies the whole blob', async () => {
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'drop', afterBytes: 150_000 } });
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'drop', afterBytes: 100_000 } });
    const got = await collect(client.fetchBlob(repo, layer.descriptor));
    assert.ok(got.equals(layer.bytes));
    const gets = proxy.log.filter((e) => e.method === 'GET');
    assert.equal(gets.length, 3);
    assert.equal(gets[0]?.range, undefined);
    assert.match(gets[1]?.range ?? '', /^bytes=\d+-$/);
    assert.ok(Number(/=(\d+)-/.exec(gets[2]?.range ?? '')?.[1]) > Number(/=(\d+)-/.exec(gets[1]?.range ?? '')?.[1]), 'each resume starts further on');
  });

  test('connection cut during a range read: the rest is asked for again', async () => {
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'drop', afterBytes: 70_000 } });
    const got = await client.readAt(repo, layer.descriptor, 5_000, 200_000, { purpose: 'prefetch' });
    assert.ok(got.equals(layer.bytes.subarray(5_000, 205_000)));
    assert.equal(proxy.log.filter((e) => e.method === 'GET').length, 2);
  });

  test('a corrupted blob is never returned as good: the stream errors and a file written from it fails', async () => {
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' } });
    await assert.rejects(collect(client.fetchBlob(repo, layer.descriptor)), (err: unknown) => {
      assert.ok(err instanceof ErrDigestMismatch, String(err));
      assert.match(err.message, new RegExp(layer.descriptor.digest));
      return true;
    });
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' } });
    await assert.rejects(pipeline(client.fetchBlob(repo, layer.descriptor), createWriteStream(join(dir, 'layer'))), ErrDigestMismatch);
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' } });
    await assert.rejects(client.readBlob(repo, config.descriptor), ErrDigestMismatch);
    // and the bytes seen before the error are never the whole blob
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' } });
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const chunk of client.fetchBlob(repo, layer.descriptor)) seen += (chunk as Buffer).length;
      })(),
      ErrDigestMismatch,
    );
    assert.ok(seen < layer.descriptor.size, `${seen} bytes handed out before the error`);
  });

  test('a corrupted manifest is refused, by digest and by tag (Docker-Content-Digest)', async () => {
    proxy.inject({ method: 'GET', path: /\/manifests\//, times: 2, fault: { kind: 'corrupt' } });
    await assert.rejects(client.getManifest(`${repo}@${m.digest}`), ErrDigestMismatch);
    await assert.rejects(client.getManifest(`${repo}:v1`), ErrDigestMismatch);
  });

  test('uploads: a 500 or a cut connection mid-upload restarts the upload from a new session', async () => {
    const blob = randomBlob(200_000);
    proxy.inject({ method: 'PUT', path: /\/blobs\/uploads\//, fault: { kind: 'status', status: 500 } });
    assert.equal((await client.pushBlob(repo, blob.descriptor, blob.bytes)).status, 'uploaded');
    assert.equal(proxy.log.filter((e) => e.method === 'POST').length, 2, 'a second session');
    assert.equal(proxy.log.filter((e) => e.method === 'PUT').length, 2);
    assert.ok((await direct.readBlob(`${reg.host}/faults/app`, blob.descriptor)).equals(blob.bytes));

    proxy.log.length = 0;
    const chunked = randomBlob(150_000);
    let opened = 0;
    proxy.inject({ method: 'PATCH', fault: { kind: 'reset' } });
    const res = await client.pushBlob(repo, chunked.descriptor, () => {
      opened++;
      return Readable.from([chunked.bytes]);
    }, { chunkSize: 64 * 1024 });
    assert.equal(res.status, 'uploaded');
    assert.equal(opened, 2, 'the source factory is called again for the restart');
    assert.equal(proxy.log.filter((e) => e.method === 'POST').length, 2);
    assert.ok((await direct.readBlob(`${reg.host}/faults/app`, chunked.descriptor)).equals(chunked.bytes));
  });

  test('manifest PUT is retried in place after a 503', async () => {
    const m2 = manifestBytes(config.descriptor, [layer.descriptor], true);
    proxy.inject({ method: 'PUT', path: /\/manifests\//, fault: { kind: 'status', status: 503 } });
    await client.pushManifest(`${repo}:v2`, m2.bytes, m2.mediaType);
    assert.ok((await direct.getManifest(`${reg.host}/faults/app:v2`)).bytes.equals(m2.bytes));
  });

  test('a server that ignores Range: readAt and a resumed stream skip to the right bytes', async () => {
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'ignore-range' } });
    assert.ok((await client.readAt(repo, layer.descriptor, 300_001, 1234)).equals(layer.bytes.subarray(300_001, 301_235)));
    assert.equal(proxy.log[0]?.status, 200);
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'drop', afterBytes: 123_456 } });
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'ignore-range' } });
    assert.ok((await collect(client.fetchBlob(repo, layer.descriptor))).equals(layer.bytes));
  });

  test('blob GETs follow a redirect to another origin, keeping Range', async () => {
    const storage = await startFaultProxy(reg.url);
    try {
      proxy.inject({ method: 'GET', path: /\/blobs\//, times: 2, fault: { kind: 'redirect', origin: storage.url } });
      assert.ok((await client.readAt(repo, layer.descriptor, 77_777, 4096)).equals(layer.bytes.subarray(77_777, 77_777 + 4096)));
      assert.ok((await collect(client.fetchBlob(repo, layer.descriptor))).equals(layer.bytes));
      assert.deepEqual(proxy.log.map((e) => e.status), [307, 307]);
      assert.deepEqual(storage.log.map((e) => [e.status, e.range]), [[206, 'bytes=77777-81872'], [200, undefined]]);
    } finally {
      await storage.stop();
    }
  });

  test('concurrency is bounded: 12 parallel range reads, at most 2 requests in flight', async () => {
    const two = new RegistryClient({ concurrency: 2 });
    try {
      const reads = Array.from({ length: 12 }, (_, i) => two.readAt(repo, layer.descriptor, i * 30_000, 30_000));
      const got = await Promise.all(reads);
      got.forEach((b, i) => assert.ok(b.equals(layer.bytes.subarray(i * 30_000, (i + 1) * 30_000))));
      assert.ok(proxy.maxInFlight <= 2, `max in flight ${proxy.maxInFlight}`);
      assert.ok(proxy.maxInFlight >= 1);
    } finally {
      await two.close();
    }
  });

  test('the proxy is gone: ErrUnavailable for reads and pushes', async () => {
    const gone = await startFaultProxy(reg.url);
    const url = `${gone.host}/faults/app`;
    await gone.stop();
    await assert.rejects(client.getManifest(`${url}:v1`), ErrUnavailable);
    await assert.rejects(collect(client.fetchBlob(url, layer.descriptor)), ErrUnavailable);
    await assert.rejects(client.pushBlob(url, config.descriptor, config.bytes), ErrUnavailable);
  });
});
