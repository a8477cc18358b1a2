/**
 * One daemon, several clients: a long holder (records held through the daemon's Hold call, as a
 * build holds its refs) while du and prune run from other clients — du shows the held records in
 * use, prune never removes them, and neither waits for the holder.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@buildcache/server';
import type { UsageInfo } from '@buildcache/cache';
import { BuildkitClient, run, startDaemon, syntheticRoot, type UsageRecord } from './helpers.js';
import { syntheticId } from '../support/synthetic.js';

const COUNT = 1000;

describe('buildcache serve: concurrent clients', () => {
  test('a holder keeps its records in use for du and safe from prune; du and prune do not wait for it', async () => {
    const root = await syntheticRoot(COUNT);
    const daemon = await startDaemon(root);
    const holder = connect(daemon.address);
    const other = connect(daemon.address);
    const bk = new BuildkitClient(daemon.address);
    try {
      // Record 15 sits on the chain 10 → 15: holding it holds its ancestors too.
      const hold = await holder.hold({ ids: [syntheticId(15)], newMutable: { description: 'long build' } });
      const [heldId, mutableId] = hold.ids as [string, string];
      assert.equal(heldId, syntheticId(15));
      const inUse = new Set([...[10, 11, 12, 13, 14, 15].map(syntheticId), mutableId]);

      // du (buildcache's API) and prune (the CLI) at the same time, from two other clients.
      const usage: UsageInfo[] = [];
      const [, pruned] = await Promise.all([
        (async () => {
          for await (const u of other.diskUsage()) usage.push(u);
        })(),
        run(['--addr', daemon.address, 'prune', '--all', '--format', 'json']),
      ]);
      assert.ok(usage.length >= inUse.size);
      for (const u of usage) if (inUse.has(u.id)) assert.equal(u.inUse, true, u.id);
      assert.equal(pruned.code, 0, pruned.stderr);
      const deleted = pruned.stdout.trim().split('\n').slice(0, -1).map((l) => (JSON.parse(l) as { id: string }).id);
      assert.equal(deleted.length, COUNT - 6);
      assert.ok(deleted.every((id) => !inUse.has(id)));

      // What is left is exactly what is held, in use, as BuildKit's DiskUsage shows it.
      const { record } = await bk.unary<{ record: UsageRecord[] }>('DiskUsage', {});
      assert.deepEqual(record.map((r) => r.ID).sort(), [...inUse].sort());
      assert.ok(record.every((r) => r.InUse));
      assert.equal(record.find((r) => r.ID === mutableId)!.Mutable, true);
      // A BuildKit prune streams nothing while they are held.
      assert.deepEqual(await bk.stream('Prune', { all: true }), []);

      await hold.release();
      const result = await other.prune([{ all: true }]);
      assert.equal(result.deleted, 6);
      const left: UsageInfo[] = [];
      for await (const u of other.diskUsage()) left.push(u);
      assert.deepEqual(left, []);
    } finally {
      holder.close();
      other.close();
      bk.close();
      daemon.child.kill('SIGTERM');
      await daemon.exited;
    }
  });
});
