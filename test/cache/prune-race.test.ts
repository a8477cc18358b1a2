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
 *   came up and released before the next pass goes, with the parent it held;
 * - a record that gains a child after the census (which counted it childless) stays, even once the
 *   child has left memory (nothing in memory holds the parent then): deleting it would orphan the
 *   child, cleared at its next load.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { syntheticId } from '../support/synthetic.js';
import { openSyntheticCache, openTestCache, readFileOf, writeFiles, type TestCache } from './helpers.js';

/** More records than residency.ts keeps in memory without a sweep (1,024). */
const OVER_RESIDENT = 1100;

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

    test('a record that gains a child during the prune is not deleted, even once the child has left memory', async () => {
      const t = await openSyntheticCache(kind, OVER_RESIDENT);
      try {
        const { cache } = t;
        const parent = await finalized(cache);
        const parentId = parent.id;
        await parent.release();
        let childId: string | undefined;
        const r = await cache.prune([{ all: true, filters: [`id==${parentId}`], minFreeSpace: Number.MAX_SAFE_INTEGER }], {
          // Called after the census, which counted the parent childless.
          diskStat: async () => {
            if (childId === undefined) {
              const p = await cache.get(parentId, { noUpdateLastUsed: true });
              const child = await finalized(cache, p);
              childId = child.id;
              await p.release();
              await child.release();
              // Its last-used stamp written now rather than within a second, so that nothing keeps it in memory.
              await cache.context.records.get(childId)?.md.commit();
              // More records in memory than residency keeps: releasing them sweeps out every idle one.
              const held: ImmutableRef[] = [];
              for (let i = 0; i < OVER_RESIDENT; i++) held.push(await cache.get(syntheticId(i), { noUpdateLastUsed: true }));
              for (const h of held) await h.release();
              assert.ok(!cache.context.records.has(childId), 'the child left memory');
            }
            return { total: 1e12, free: 0 };
          },
        });
        assert.ok(childId !== undefined, 'a child was made during the prune');
        assert.equal(r.deleted, 0, 'the parent has a child: not deleted');
        const child = await cache.get(childId);
        assert.equal(await readFileOf(child, 'data'), 'x'.repeat(100), 'the child loads, with its data');
        await child.release();
      } finally {
        await t.close();
      }
    });
  });
}
