/**
 * Records held by cache keys in `buildcache du` and `prune` (issue 15, item 5), on both backends:
 * du -v shows them reclaimable with their type and description; prune without --all keeps the
 * `frontend` ones (BuildKit's default) and takes the others with their keys; prune --all takes the rest.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { openCache, type CacheManager, type OpenCacheOptions, type RecordType } from '@buildcache/cache';
import { containerdAddress } from '../harness/containerd.js';
import { run, tempDir } from './helpers.js';

const dg = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

const setups: { name: string; options: () => Omit<OpenCacheOptions, 'root'>; flags: (o: Omit<OpenCacheOptions, 'root'>) => string[] }[] = [
  { name: 'embedded', options: () => ({}), flags: () => [] },
  {
    name: 'containerd',
    options: () => ({ containerd: containerdAddress(), namespace: `bckeys-${randomBytes(4).toString('hex')}` }),
    flags: (o) => ['--containerd', o.containerd!, '--namespace', o.namespace!],
  },
];

/** A build step's result: a record with one file, recorded under key `op`. */
async function step(cache: CacheManager, op: string, text: string, recordType?: RecordType): Promise<string> {
  const m = await cache.new(undefined, { retain: true });
  const mount = await m.mount();
  await writeFile(join(mount.target, 'out'), text);
  await mount.unmount();
  const ref = await m.commit();
  await cache.keys.record(dg(op), [], ref.id, { description: text, ...(recordType ? { recordType } : {}) });
  await ref.release();
  return ref.id;
}

async function withCache<T>(root: string, options: Omit<OpenCacheOptions, 'root'>, fn: (cache: CacheManager) => Promise<T>): Promise<T> {
  const opened = await openCache({ root, ...options });
  try {
    return await fn(opened.cache);
  } finally {
    await opened.close();
  }
}

for (const setup of setups) {
  describe(`key-held records in the CLI (${setup.name})`, () => {
    test('du -v shows type and description; prune keeps frontend records unless --all, and their keys go with them', async () => {
      const root = await tempDir();
      const options = setup.options();
      const [front, regular] = await withCache(root, options, async (cache) => [
        await step(cache, 'FROM frontend', 'frontend image', 'frontend'),
        await step(cache, 'RUN make', 'RUN make'),
      ]);
      const cli = ['--root', root, ...setup.flags(options)];
      const du = await run([...cli, 'du', '-v']);
      assert.equal(du.code, 0, du.stderr);
      const blocks = du.stdout.split('\n\n').filter((b) => b.includes('ID:'));
      const block = (id: string): string => blocks.find((b) => b.includes(id)) ?? '';
      assert.match(block(front), /Reclaimable:\s+true/);
      assert.match(block(front), /Description:\s+frontend image/);
      assert.match(block(front), /Type:\s+frontend/);
      assert.match(block(regular), /Description:\s+RUN make/);
      assert.match(block(regular), /Type:\s+regular/);

      const pruned = await run([...cli, 'prune', '--format', 'json']);
      assert.equal(pruned.code, 0, pruned.stderr);
      const deleted = pruned.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id?: string }).filter((r) => r.id);
      assert.deepEqual(deleted.map((r) => r.id), [regular], 'without --all the frontend record stays');
      await withCache(root, options, async (cache) => {
        assert.equal(await cache.keys.lookup(dg('RUN make'), []), undefined, 'the pruned record took its key');
        const kept = await cache.keys.lookup(dg('FROM frontend'), []);
        assert.equal(kept?.id, front);
        await kept?.release();
      });

      const all = await run([...cli, 'prune', '--all', '--format', 'json']);
      assert.equal(all.code, 0, all.stderr);
      assert.match(all.stdout, new RegExp(front));
      await withCache(root, options, async (cache) => {
        assert.equal(await cache.keys.lookup(dg('FROM frontend'), []), undefined);
      });
    });
  });
}
