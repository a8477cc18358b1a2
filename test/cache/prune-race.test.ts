/**
 * What a prune leaves must not depend on timing (issue 12: `prune --all` left records in 2 of many
 * runs when only V8's collection timing changed). A prune takes a census, then deletes in batches,
 * so the state a record is judged in may change in between; these tests force each change at a
 * fixed point through the prune's own callbacks (`diskStat` runs between a pass's census and its
 * deletions, `onDeleted` after each batch), not by timing:
 * - a pair whose committed record had a handle at the census and none when its batch came up is
 *   free then, so it goes (it was skipped as "not the pair's representative any more");
 * - a record made and released while the prune runs was never looked at, and is free at the end;
 * - as BuildKit's prune loops its rounds until one deletes nothing, a record in use when its batch
 *   came up and released before the next pass goes, with the parent it held.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, writeFiles, type TestCache } from './helpers.js';

/** A finalized record with one small file, on top of `parent`; the caller releases the ref. */
async function finalized(cache: CacheManager, parent?: ImmutableRef): Promise<ImmutableRef> {
  const m = await cache.new(parent);
  await writeFiles(m, { data: 'x'.repeat(100) });
  const r = await m.commit();
  await r.finalize();
  return r;
}

/** A retained mutable record and the committed record sharing its data (returned, held). */
async function pair(cache: CacheManager): Promise<ImmutableRef> {
  const m = await cache.new(undefined, { retain: true });
  await writeFiles(m, { data: 'y'.repeat(100) });
  return m.commit();
}

/** How many entries `du` lists. */
async function duCount(cache: CacheManager): Promise<number> {
  let n = 0;
  for await (const _ of cache.diskUsage()) n++;
  return n;
}

/** Runs `fn` on a fresh cache of `kind`, then closes it. */
async function withCache(kind: (typeof BACKENDS)[number], fn: (t: TestCache) => Promise<void>): Promise<void> {
  const t = await openTestCache(kind);
  try {
    await fn(t);
  } finally {
    await t.close();
  }
}

for (const kind of BACKENDS) {
  describe(`prune races on ${kind.name}`, () => {
    test('a pair whose committed record is released between the census and its batch is deleted', async () => {
      await withCache(kind, async ({ cache }) => {
        const held = await pair(cache);
        let released = false;
        const r = await cache.prune([{ all: true, minFreeSpace: Number.MAX_SAFE_INTEGER }], {
          // Called after the census (which saw the committed record in use, so standing for the pair).
          diskStat: async () => {
            if (!released) {
              released = true;
              await held.release();
            }
            return { total: 1e12, free: 0 };
          },
        });
        assert.ok(released, 'the space policy read the disk');
        assert.equal(r.deleted, 1, 'the pair is one entry, deleted');
        assert.equal(await duCount(cache), 0, 'nothing left');
      });
    });

    test('a record made and released while the prune runs (never in its census) is deleted', async () => {
      await withCache(kind, async ({ cache }) => {
        await (await finalized(cache)).release();
        let made: string | undefined;
        const deleted: string[] = [];
        const r = await cache.prune([{ all: true }], {
          onDeleted: async (info) => {
            deleted.push(info.id);
            if (made) return;
            const ref = await finalized(cache);
            made = ref.id;
            await ref.release();
          },
        });
        assert.ok(made, 'a record was made during the prune');
        assert.equal(r.deleted, 2);
        assert.ok(deleted.includes(made), 'the record made during the prune is reported deleted');
        assert.equal(await duCount(cache), 0, 'nothing left');
      });
    });

    test('a record in use when its batch came up and released before the prune ends goes, with its parent', async () => {
      await withCache(kind, async ({ cache }) => {
        const parent = await finalized(cache);
        const child = await finalized(cache, parent);
        await parent.release();
        await (await finalized(cache)).release();
        let releasedChild = false;
        const r = await cache.prune([{ all: true }], {
          // The first batch has the free record and the held child (its parent waits for the child).
          onDeleted: async () => {
            if (releasedChild) return;
            releasedChild = true;
            await child.release();
          },
        });
        assert.ok(releasedChild);
        assert.equal(r.deleted, 3, 'the free record, then the child and its parent');
        assert.equal(await duCount(cache), 0, 'nothing left');
      });
    });
  });
}
