/**
 * Bad input to the daemon: another protocol on the socket (raw bytes, HTTP/1), bad requests through
 * buildcache's client, unimplemented operations, and 1,000 concurrent du streams — typed errors
 * (INVALID_ARGUMENT, RESOURCE_EXHAUSTED past the concurrency limit), bounded memory, and the daemon
 * keeps serving.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { connect, type CacheClient } from '@buildcache/server';
import { ErrInvalidArgument, ErrResourceExhausted } from '@buildcache/errdefs';
import { status } from '@grpc/grpc-js';
import { BuildkitClient, peakRss, startDaemon, syntheticRoot, type TestDaemon } from './helpers.js';

const COUNT = 1000;

/** Sends `bytes` on the socket; resolves with what came back once the daemon closed the connection. */
function speak(socket: string, bytes: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = netConnect(socket);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
    s.write(bytes);
  });
}

async function count(client: CacheClient): Promise<number> {
  let n = 0;
  for await (const _ of client.diskUsage()) n++;
  return n;
}

describe('buildcache serve: bad input', () => {
  let daemon: TestDaemon;
  let client: CacheClient;
  before(async () => {
    daemon = await startDaemon(await syntheticRoot(COUNT));
    client = connect(daemon.address);
  });
  after(async () => {
    client.close();
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });

  test('raw bytes and HTTP/1 on the socket: the connection is closed, the daemon keeps serving', async () => {
    await speak(daemon.socket, randomBytes(4096));
    const http1 = await speak(daemon.socket, 'GET /moby.buildkit.v1.Control/Info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    assert.doesNotMatch(http1.toString('latin1'), /buildkitVersion|synthetic/);
    assert.equal(await count(client), COUNT);
  });

  test('unknown filter fields, negative sizes and durations are ErrInvalidArgument and delete nothing', async () => {
    await assert.rejects(client.diskUsage({ filters: ['colour==red'] }).next(), (e) => {
      assert.ok(e instanceof ErrInvalidArgument);
      assert.match(e.message, /unknown filter field "colour"; use one of id, type/);
      return true;
    });
    for (const policy of [{ maxUsedSpace: -1 }, { reservedSpace: -4096 }, { minFreeSpace: -1 }, { keepDurationMs: -1 }, { filters: ['x==1'] }]) {
      await assert.rejects(client.prune([policy]), ErrInvalidArgument, JSON.stringify(policy));
    }
    await assert.rejects(client.prune([]), /at least one policy/);
    assert.equal(await count(client), COUNT);
  });

  test('1,000 concurrent du streams: each completes or is refused with RESOURCE_EXHAUSTED; memory stays bounded', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 1000 }, () =>
        count(client).then(
          (n) => ({ n }),
          (err: unknown) => ({ err }),
        ),
      ),
    );
    const ok = outcomes.filter((o) => 'n' in o);
    const refused = outcomes.filter((o) => 'err' in o);
    assert.ok(ok.length > 0 && refused.length > 0, `${ok.length} completed, ${refused.length} refused`);
    assert.ok(ok.every((o) => o.n === COUNT));
    for (const o of refused) {
      assert.ok(o.err instanceof ErrResourceExhausted, String(o.err));
      assert.match(o.err.message, /too many disk-usage calls at once \(limit 16\)/);
    }
    // Bounded: the refused calls cost next to nothing (a 1,000-record cache serves in well under 512 MiB).
    assert.ok((await peakRss(daemon.child.pid!)) < 512 * 2 ** 20);
    assert.equal(await count(client), COUNT);
  });

  test("BuildKit's one-message DiskUsage has a tighter limit: 20 at once, most refused with RESOURCE_EXHAUSTED", async () => {
    const bk = new BuildkitClient(daemon.address);
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, () => bk.unary<{ record: unknown[] }>('DiskUsage', {}).then((r) => r.record.length, (e: { code: number; details: string }) => e)),
      );
      const refused = outcomes.filter((o) => typeof o !== 'number');
      assert.ok(refused.length > 0 && refused.length < 20);
      for (const e of refused) {
        assert.equal(e.code, status.RESOURCE_EXHAUSTED);
        assert.match(e.details, /too many BuildKit DiskUsage calls .* at once \(limit 2\)/);
      }
      assert.ok(outcomes.filter((o) => typeof o === 'number').every((n) => n === COUNT));
    } finally {
      bk.close();
    }
  });
});
