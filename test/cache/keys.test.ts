/** The cache-key store on every backend: record, lookup, chained keys, du and prune, remove, reopen, bad input. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { resultKey, type CacheManager, type UsageInfo } from '@buildcache/cache';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, readFileOf, writeFiles, type TestCache } from './helpers.js';

const dg = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** A committed (not finalized) record holding `files`; returns its ID. */
async function committed(cache: CacheManager, files: Record<string, string>, description?: string): Promise<string> {
  const m = await cache.new(undefined, { retain: true, ...(description === undefined ? {} : { description }) });
  await writeFiles(m, files);
  const imm = await m.commit();
  await imm.release();
  return imm.id;
}

async function usage(cache: CacheManager): Promise<UsageInfo[]> {
  const out: UsageInfo[] = [];
  for await (const u of cache.diskUsage()) out.push(u);
  return out;
}

for (const kind of BACKENDS) {
  describe(`cache keys on ${kind.name}`, () => {
    let t: TestCache;
    before(async () => {
      t = await openTestCache(kind);
    });
    after(async () => {
      await t.close();
    });

    test('a recorded key finds its record (after reopen too); other inputs or ops find nothing', async () => {
      const { cache } = t;
      const m = await cache.new(undefined, { retain: true });
      await writeFiles(m, { 'out.txt': 'built' });
      const imm = await m.commit();
      const op = dg('RUN make');
      const key = await cache.keys.record(op, [dg('base')], imm.id, { description: 'RUN make', recordType: 'frontend' });
      await imm.release();
      assert.equal(key, resultKey(op, [dg('base')]));
      assert.equal(await cache.keys.lookup(op, [dg('other')]), undefined);
      assert.equal(await cache.keys.lookup(dg('RUN other'), [dg('base')]), undefined);
      assert.equal(await cache.keys.lookup(op, [dg('base'), dg('base')]), undefined, 'inputs are positional');

      const reopened = await t.reopen();
      const ref = await reopened.keys.lookup(op, [dg('base')]);
      assert.ok(ref, 'the key survives a reopen');
      assert.equal(ref.id, imm.id);
      assert.equal(await readFileOf(ref, 'out.txt'), 'built');
      assert.deepEqual((await reopened.keys.keysOf(ref.id)).map((k) => k.key), [key]);
      // chaining: the result key is the input of the next operation
      const m2 = await reopened.new(ref);
      await writeFiles(m2, { 'next.txt': 'next' });
      const child = await m2.commit();
      await reopened.keys.record(dg('RUN next'), [key], child.id);
      await child.release();
      await ref.release();
      const found = await reopened.keys.lookup(dg('RUN next'), [key]);
      assert.equal(found?.id, child.id);
      await found?.release();
      await reopened.prune([{ all: true }]);
    });

    test('key-held records are reclaimable with their type and description; prune keeps frontend ones without all and drops keys with records', async () => {
      const { cache } = t;
      const front = await committed(cache, { f: 'front' });
      const reg = await committed(cache, { r: 'regular' });
      await cache.keys.record(dg('op-front'), [], front, { description: 'RUN front', recordType: 'frontend' });
      await cache.keys.record(dg('op-reg'), [], reg, { description: 'COPY . /src' });
      const rows = await usage(cache);
      assert.equal(rows.length, 2, 'one entry per record: recording finalized them (no mutable twin)');
      const byId = new Map(rows.map((u) => [u.id, u]));
      assert.deepEqual(
        [byId.get(front), byId.get(reg)].map((u) => [u?.inUse, u?.mutable, u?.recordType, u?.description]),
        [
          [false, false, 'frontend', 'RUN front'],
          [false, false, 'regular', 'COPY . /src'],
        ],
      );
      const pruned: string[] = [];
      await cache.prune([{}], { onDeleted: (u) => void pruned.push(u.id) });
      assert.deepEqual(pruned, [reg], 'prune without all deletes the regular record, keeps the frontend one (BuildKit)');
      assert.equal(await cache.keys.lookup(dg('op-reg'), []), undefined, 'its key went with it');
      const kept = await cache.keys.lookup(dg('op-front'), []);
      assert.equal(kept?.id, front);
      await kept?.release();
      await cache.prune([{ all: true }]);
      assert.equal(await cache.keys.lookup(dg('op-front'), []), undefined, 'prune --all deletes frontend records and their keys');
      assert.deepEqual(await usage(cache), []);
    });

    test('remove drops a key; a record left without keys is an ordinary record that prune reclaims', async () => {
      const { cache } = t;
      const id = await committed(cache, { x: 'x' });
      await cache.keys.record(dg('a'), [], id);
      await cache.keys.record(dg('b'), [dg('in')], id);
      assert.equal(await cache.keys.remove(dg('a'), []), 1);
      assert.equal(await cache.keys.remove(dg('a'), []), 0);
      assert.equal(await cache.keys.lookup(dg('a'), []), undefined);
      const still = await cache.keys.lookup(dg('b'), [dg('in')]);
      assert.equal(still?.id, id);
      await still?.release();
      assert.equal(await cache.keys.remove(dg('b'), [dg('in')]), 1);
      assert.deepEqual(await cache.keys.keysOf(id), []);
      assert.deepEqual((await usage(cache)).map((u) => u.id), [id], 'the record itself stays until pruned');
      assert.equal((await cache.prune([{}])).deleted, 1);
    });

    test('bad input is refused and changes nothing', async () => {
      const { cache } = t;
      const id = await committed(cache, { y: 'y' });
      await assert.rejects(cache.keys.record('RUN make', [], id), ErrInvalidArgument);
      await assert.rejects(cache.keys.record(dg('op'), ['nope'], id), /input 0 is not a sha256 digest/);
      await assert.rejects(cache.keys.record(dg('op'), [], id, { recordType: 'bogus' as never }), ErrInvalidArgument);
      await assert.rejects(cache.keys.record(dg('op'), [], 'nosuchrecord'), ErrNotFound);
      await assert.rejects(cache.keys.lookup('x', []), ErrInvalidArgument);
      assert.deepEqual(await cache.keys.keysOf(id), []);
      const [u] = await usage(cache);
      assert.equal(u?.recordType, 'regular');
      assert.equal(u?.mutable, true, 'nothing was finalized either');
      await cache.prune([{ all: true }]);
    });
  });
}
