/**
 * One on-disk layout for the CLI and the API (issue 11, item 14): what a program writes through
 * `openCache({ root })` is what `buildcache --root` shows and prunes, on both backends.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openCache, type OpenCacheOptions } from '@buildcache/cache';
import { containerdAddress } from '../harness/containerd.js';
import { run, tempDir } from './helpers.js';

const setups: { name: string; options: (root: string) => Omit<OpenCacheOptions, 'root'>; flags: (o: Omit<OpenCacheOptions, 'root'>) => string[] }[] = [
  { name: 'embedded', options: () => ({}), flags: () => [] },
  {
    name: 'containerd',
    options: () => ({ containerd: containerdAddress(), namespace: `bclayout-${randomBytes(4).toString('hex')}` }),
    flags: (o) => ['--containerd', o.containerd!, '--namespace', o.namespace!],
  },
];

for (const setup of setups) {
  describe(`openCache and the CLI share one layout (${setup.name})`, () => {
    test('a record a program commits through openCache is what buildcache --root X du shows and prunes', async () => {
      const root = await tempDir();
      const options = setup.options(root);
      const opened = await openCache({ root, ...options });
      try {
        const m = await opened.cache.new(undefined, { description: 'written by a program' });
        const mount = await m.mount();
        await writeFile(join(mount.target, 'hello.txt'), 'hello');
        await mount.unmount();
        const ref = await m.commit();
        await ref.finalize(); // kept until pruned
        await ref.release();
      } finally {
        await opened.close();
      }
      const cli = ['--root', root, ...setup.flags(options)];
      const du = await run([...cli, 'du', '--format', 'json']);
      assert.equal(du.code, 0, du.stderr);
      const records = JSON.parse(du.stdout) as { description: string }[];
      assert.deepEqual(records.map((r) => r.description), ['written by a program']);

      const pruned = await run([...cli, 'prune', '--format', 'json']);
      assert.equal(pruned.code, 0, pruned.stderr);
      const again = await openCache({ root, ...options });
      try {
        const left: string[] = [];
        for await (const u of again.cache.diskUsage()) left.push(u.id);
        assert.deepEqual(left, [], 'the program sees what the CLI pruned');
      } finally {
        await again.close();
      }
    });
  });
}

test('openCache refuses a namespace without a containerd socket, and an unknown snapshotter', async () => {
  const root = await tempDir();
  await assert.rejects(openCache({ root, namespace: 'x' }), { code: 'ERR_INVALID_ARGUMENT', message: /namespace applies only to a containerd backend/ });
  await assert.rejects(openCache({ root, snapshotter: 'zfs' }), { code: 'ERR_INVALID_ARGUMENT', message: /unknown snapshotter "zfs"/ });
});
