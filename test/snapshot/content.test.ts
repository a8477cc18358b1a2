/**
 * Content store semantics (containerd-api.md §6) on every backend: verified writes, resume after
 * close(), digest/size mismatch (ingest kept, abort works), read ranges and out-of-range reads,
 * existing blobs, labels, update and walk filters.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound, ErrOutOfRange } from '@buildcache/errdefs';
import { KNOWN_DIFFERENCES, backendKinds, collect, expectedFor, isGone, openFixture, readBlob, rejectsWith, sha256, writeBlob } from './helpers.js';
import type { ErrorClass, Fixture } from './helpers.js';

for (const kind of backendKinds()) {
  describe(`content [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    it('writes with expected digest and size, in several chunks, and reads back', async () => {
      const c = f.backend.content;
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const ref = f.name('w');
      const w = await c.writer(ref, { ...f.leased, total: data.length, expected: sha256(data) });
      assert.equal(w.offset, 0);
      for (let at = 0; at < data.length; at += 700_000) await w.write(data.subarray(at, at + 700_000));
      assert.equal(w.offset, data.length);
      const digest = await w.commit({ size: data.length, expected: sha256(data), labels: { 'x/a': '1' } });
      assert.equal(digest, sha256(data));
      const info = await c.info(digest);
      assert.equal(info.size, data.length);
      assert.deepEqual(info.labels, { 'x/a': '1' });
      assert.ok(Buffer.from(await readBlob(f.backend, digest)).equals(data));
      await rejectsWith(c.status(ref), ErrNotFound, 'a committed ingest is gone');
    });

    it('a write resumes after close() at the offset already held', async () => {
      const c = f.backend.content;
      const data = randomBytes(200_000);
      const ref = f.name('resume');
      const w1 = await c.writer(ref, { ...f.leased, total: data.length });
      await w1.write(data.subarray(0, 80_000));
      await w1.close();
      const st = await c.status(ref);
      assert.equal(st.ref, ref);
      assert.equal(st.offset, 80_000);
      assert.equal(st.total, data.length);
      assert.ok((await c.listStatuses([`ref~=^${ref.slice(0, 10)}`])).some((s) => s.ref === ref), 'listStatuses filter');
      assert.deepEqual(await c.listStatuses(['ref==no-such-ref']), []);
      const w2 = await c.writer(ref, f.leased);
      assert.equal(w2.offset, 80_000);
      await w2.write(data.subarray(80_000));
      assert.equal(await w2.commit({ size: data.length, expected: sha256(data) }), sha256(data));
      assert.ok((await readBlob(f.backend, sha256(data))).equals(data));
    });

    it('a resumed writer that ignores its offset (writes from 0 again) cannot commit', async () => {
      const c = f.backend.content;
      const data = randomBytes(5000);
      const ref = f.name('wrong-offset');
      const w1 = await c.writer(ref, f.leased);
      await w1.write(data.subarray(0, 2000));
      await w1.close();
      const w2 = await c.writer(ref, f.leased);
      assert.equal(w2.offset, 2000);
      await w2.write(data); // as if at offset 0: the ingest now holds 2000 + 5000 bytes
      assert.equal(w2.offset, 7000);
      await rejectsWith(w2.commit({ size: data.length, expected: sha256(data) }), ErrFailedPrecondition, 'size');
      const w3 = await c.writer(ref, f.leased);
      await rejectsWith(w3.commit({ expected: sha256(data) }), ErrFailedPrecondition, 'digest');
      assert.ok(await isGone(c.info(sha256(data))));
      await c.abort(ref);
    });

    it(`a write at an explicit wrong offset: ${String(expectedFor(KNOWN_DIFFERENCES.writeAtOffset, kind.name))} (known difference)`, async () => {
      const c = f.backend.content;
      const ref = f.name('explicit-offset');
      const w = await c.writer(ref, f.leased);
      await w.write(Buffer.from('0123456789'));
      // not part of the ContentWriter contract: both implementations take an optional offset
      const write = w.write.bind(w) as (chunk: Uint8Array, offset?: number) => Promise<void>;
      const expected = expectedFor(KNOWN_DIFFERENCES.writeAtOffset, kind.name);
      if (typeof expected === 'function') {
        await rejectsWith(write(Buffer.from('x'), 5), expected as ErrorClass);
      } else {
        await write(Buffer.from('x'), 5);
        assert.equal(w.offset, 11, 'the offset is ignored: the chunk is appended');
      }
      await w.close();
      await c.abort(ref);
    });

    it('a digest mismatch is ErrFailedPrecondition; the ingest stays until abort', async () => {
      const c = f.backend.content;
      const data = randomBytes(1000);
      const ref = f.name('bad-digest');
      const w = await c.writer(ref, f.leased);
      await w.write(data);
      const wrong = sha256('something else');
      await rejectsWith(w.commit({ size: data.length, expected: wrong }), ErrFailedPrecondition);
      assert.ok(await isGone(c.info(sha256(data))), 'nothing committed');
      assert.ok(await isGone(c.info(wrong)));
      assert.equal((await c.status(ref)).offset, data.length, 'ingest kept');
      await c.abort(ref);
      await rejectsWith(c.status(ref), ErrNotFound, 'aborted');
      await rejectsWith(c.abort(ref), ErrNotFound, 'abort again');
    });

    it('a size mismatch is ErrFailedPrecondition; the ingest stays and can be completed', async () => {
      const c = f.backend.content;
      const data = randomBytes(1000);
      const ref = f.name('bad-size');
      const w = await c.writer(ref, f.leased);
      await w.write(data.subarray(0, 600));
      await rejectsWith(w.commit({ size: data.length, expected: sha256(data) }), ErrFailedPrecondition);
      assert.equal((await c.status(ref)).offset, 600, 'ingest kept');
      const w2 = await c.writer(ref, f.leased);
      assert.equal(w2.offset, 600);
      await w2.write(data.subarray(600));
      assert.equal(await w2.commit({ size: data.length, expected: sha256(data) }), sha256(data));
    });

    it('a wrong expected digest given at open fails the commit (a blob cannot be stored under a wrong digest)', async () => {
      const c = f.backend.content;
      const data = randomBytes(500);
      const wrong = sha256(randomBytes(8));
      const ref = f.name('wrong-open');
      const w = await c.writer(ref, { ...f.leased, expected: wrong, total: data.length });
      await w.write(data);
      await rejectsWith(w.commit(), ErrFailedPrecondition);
      assert.ok(await isGone(c.info(wrong)));
      await c.abort(ref);
    });

    it('reads ranges; a read past the end is ErrOutOfRange', async () => {
      const data = Buffer.from('0123456789abcdefghij');
      const d = await writeBlob(f.backend, data, f.leased);
      assert.equal((await readBlob(f.backend, d, { offset: 5, length: 4 })).toString(), '5678');
      assert.equal((await readBlob(f.backend, d, { offset: 5 })).toString(), '56789abcdefghij');
      assert.equal((await readBlob(f.backend, d, { offset: 0, length: 0 })).toString(), data.toString(), 'length 0 reads to the end');
      assert.equal((await readBlob(f.backend, d, { offset: 18, length: 100 })).toString(), 'ij', 'length past the end is cut');
      assert.equal((await readBlob(f.backend, d, { offset: 20 })).length, 0, 'offset == size reads nothing');
      await rejectsWith(readBlob(f.backend, d, { offset: 21 }), ErrOutOfRange);
      await rejectsWith(readBlob(f.backend, sha256('missing')), ErrNotFound);
    });

    it('writing a blob that already exists succeeds and adds it to the lease', async () => {
      const c = f.backend.content;
      const data = randomBytes(300);
      const d = await writeBlob(f.backend, data, f.leased);
      // same bytes, new ingest, no expected digest: commit finds the blob and succeeds
      const other = f.name('other');
      await f.backend.leases.create(other, {});
      const w = await c.writer(f.name('again'), { lease: other });
      await w.write(data);
      assert.equal(await w.commit({ size: data.length }), d);
      // expected digest known at open: the writer commits at once
      const third = f.name('third');
      await f.backend.leases.create(third, {});
      const w2 = await c.writer(f.name('again2'), { lease: third, expected: d, total: data.length });
      assert.equal(await w2.commit({ size: data.length, expected: d }), d);
      for (const l of [other, third]) {
        assert.ok((await f.backend.leases.listResources(l)).some((r) => r.type === 'content' && r.id === d), `blob added to ${l}`);
      }
    });

    it('labels: update with and without field paths, walk with filters', async () => {
      const c = f.backend.content;
      const a = await writeBlob(f.backend, randomBytes(10), { ...f.leased, labels: { 'x/role': 'a', 'x/k': '1' } });
      const b = await writeBlob(f.backend, randomBytes(10), { ...f.leased, labels: { 'x/role': 'b' } });
      const n = await writeBlob(f.backend, randomBytes(10), f.leased);
      let info = await c.update({ digest: a, labels: { 'x/k': '2', 'x/role': 'ignored' } }, ['labels.x/k']);
      assert.deepEqual(info.labels, { 'x/role': 'a', 'x/k': '2' });
      info = await c.update({ digest: a, labels: {} }, ['labels.x/k']);
      assert.deepEqual(info.labels, { 'x/role': 'a' });
      info = await c.update({ digest: b, labels: { 'x/role': 'bb', 'x/new': 'n' } });
      assert.deepEqual(info.labels, { 'x/role': 'bb', 'x/new': 'n' });
      assert.deepEqual((await c.info(b)).labels, info.labels);
      await rejectsWith(c.update({ digest: a, labels: {} }, ['size']), ErrInvalidArgument, 'size is immutable');
      await rejectsWith(c.update({ digest: sha256('nope'), labels: {} }), ErrNotFound);

      const digests = async (filters?: string[]): Promise<string[]> => (await collect(c.walk(filters))).map((i) => i.digest).sort();
      assert.deepEqual(await digests(), [a, b, n].sort());
      assert.deepEqual(await digests(['labels."x/role"']), [a, b].sort());
      assert.deepEqual(await digests(['labels."x/role"==bb']), [b]);
      assert.deepEqual(await digests([`digest==${n}`, 'labels."x/role"==a']), [a, n].sort(), 'filters are OR-ed');
    });

    it('missing and malformed digests: ErrNotFound and ErrInvalidArgument', async () => {
      const c = f.backend.content;
      await rejectsWith(c.info(sha256('absent')), ErrNotFound, 'info');
      await rejectsWith(c.delete(sha256('absent')), ErrNotFound, 'delete');
      await rejectsWith(c.info('nope'), ErrInvalidArgument, 'malformed info');
      const d = await writeBlob(f.backend, randomBytes(10), f.leased);
      await c.delete(d);
      assert.ok(await isGone(c.info(d)));
      await rejectsWith(c.delete(d), ErrNotFound, 'delete again');
    });
  });
}
