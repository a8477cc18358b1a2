/**
 * The daemon goes away mid-test and comes back on the same socket and root: calls in between fail
 * with ErrUnavailable well before their deadline, then the same client object works again.
 * Uses its own private containerd so the run's shared one is untouched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrUnavailable, ErrDeadlineExceeded } from '@buildcache/errdefs';
import { Client } from '@containerd/leases-ts';
import { startContainerd } from '../harness/containerd.js';
import { uid } from './helpers.js';

test('daemon killed and restarted: ErrUnavailable, then the same client recovers', async () => {
  const daemon = await startContainerd();
  const client = Client.connect({ address: daemon.address, namespace: 'lts-restart', timeoutMs: 5_000 });
  try {
    const lease = uid('persist');
    await client.leases.create(lease, { keep: 'yes' });
    const key = uid('snap');
    await client.withLease(lease).snapshots('overlayfs').prepare(key);

    await daemon.kill({ hard: true });
    for (const call of [() => client.version(), () => client.snapshots('overlayfs').stat(key), () => client.leases.list()]) {
      const started = Date.now();
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof ErrUnavailable, `got ${String(err)}`);
        assert.equal(err.details.grpcCode, 14);
        assert.ok(typeof err.details.method === 'string');
        return true;
      });
      assert.ok(Date.now() - started < 5_000, 'fails fast, not at the deadline');
    }
    // Streams fail the same way.
    await assert.rejects(client.content.readBlob('sha256:' + '0'.repeat(64)), ErrUnavailable);

    await daemon.restart();
    const started = Date.now();
    let version;
    for (;;) {
      try {
        version = await client.version();
        break;
      } catch (err) {
        assert.ok(err instanceof ErrUnavailable, `got ${String(err)}`);
        assert.ok(Date.now() - started < 10_000, 'reconnects within the reconnect backoff');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.match(version.version, /^\d/);
    assert.equal((await client.snapshots('overlayfs').stat(key)).kind, 'active', 'state survived the restart');
    assert.ok((await client.leases.list()).some((l) => l.id === lease));
  } finally {
    await client.close();
    await daemon.stop();
  }
});

test('a call never hangs past its deadline', async () => {
  const daemon = await startContainerd();
  const client = Client.connect({ address: daemon.address, namespace: 'lts-deadline' });
  try {
    // SIGSTOP: the socket still accepts connections but nobody answers.
    await client.version();
    process.kill(daemon.pid, 'SIGSTOP');
    const started = Date.now();
    await assert.rejects(client.version({ timeoutMs: 300 }), ErrDeadlineExceeded);
    assert.ok(Date.now() - started < 3_000);
    process.kill(daemon.pid, 'SIGCONT');
    assert.match((await client.version()).version, /^\d/);
  } finally {
    await client.close();
    await daemon.stop();
  }
});
