/**
 * kill -9 of the daemon in the middle of a prune: the next daemon opens the cache cleanly (replacing
 * the stale socket), nothing that was not being pruned is lost, what was reported deleted stays
 * deleted, and the prune can be finished; afterwards no lease is left behind.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { connect } from '@buildcache/server';
import { ErrCanceled, ErrUnavailable } from '@buildcache/errdefs';
import { startDaemon, syntheticRoot, tempDir } from './helpers.js';
import { writeFiles } from '../cache/helpers.js';

const SYNTHETIC = 1500;
const logger = pino({ level: 'silent' });

describe('buildcache serve: crash', () => {
  test('kill -9 mid-prune: the restarted daemon opens cleanly and nothing is lost', async () => {
    const root = await syntheticRoot(SYNTHETIC);
    // Three real records (snapshots with files, leases) beside the synthetic ones.
    const real: string[] = [];
    {
      const { cache, close } = await openCache({ root, logger });
      for (let i = 0; i < 3; i++) {
        const m = await cache.new(undefined, { description: `real ${i}` });
        await writeFiles(m, { 'data.txt': `content ${i}` });
        const imm = await m.commit();
        await imm.finalize();
        real.push(imm.id);
        await imm.release();
      }
      await close();
    }
    const socketDir = await tempDir();
    const first = await startDaemon(root, [], socketDir);
    const client = connect(first.address);
    const reported: string[] = [];
    const pruning = client.prune([{ filters: ['description~=^synthetic'] }], {
      onDeleted: (u) => {
        reported.push(u.id);
        if (reported.length === 1) first.child.kill('SIGKILL');
      },
    });
    await assert.rejects(pruning, (e) => e instanceof ErrUnavailable || e instanceof ErrCanceled);
    assert.equal((await first.exited).signal, 'SIGKILL');
    client.close();
    assert.ok(reported.length >= 1);

    const second = await startDaemon(root, [], socketDir);
    const again = connect(second.address);
    const ids = new Set<string>();
    for await (const u of again.diskUsage()) ids.add(u.id);
    for (const id of real) assert.ok(ids.has(id), `real record ${id} survived`);
    for (const id of reported) assert.ok(!ids.has(id), `${id} was reported deleted`);
    assert.ok(ids.size >= 3 && ids.size < SYNTHETIC + 3);
    const rest = await again.prune([{ filters: ['description~=^synthetic'] }]);
    assert.equal(rest.deleted, ids.size - 3);
    again.close();
    second.child.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);

    // In process: every real record mounts with its data; pruning everything leaves no lease.
    const { cache, backend, close } = await openCache({ root, logger });
    try {
      for (const [i, id] of real.entries()) {
        const ref = await cache.get(id);
        const m = await ref.mount();
        assert.equal(await readFile(join(m.target, 'data.txt'), 'utf8'), `content ${i}`);
        await m.unmount();
        await ref.release();
      }
      assert.equal((await cache.prune([{ all: true }])).deleted, 3);
      assert.deepEqual(await backend.leases.list(), []);
    } finally {
      await close();
    }
  });
});
