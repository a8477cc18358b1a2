/** Content store semantics: writes, resume, verification, locking, reads, labels, leases. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ErrFailedPrecondition,
  ErrInvalidArgument,
  ErrNotFound,
  ErrOutOfRange,
  ErrUnavailable,
} from '@buildcache/errdefs';
import type { Backend, ContentWriter } from '../../src/types.js';
import { availableDrivers, collect, embeddedFactory, readAll, rejectsWith, sha256, writeBlob } from './helpers.js';
import type { BackendFactory, Harness } from './helpers.js';

/** The content suite, runnable against any backend factory. */
export function contentSuite(label: string, factory: BackendFactory): void {
  describe(`content: ${label}`, () => {
    let h: Harness;
    let b: Backend;
    before(async () => {
      h = await factory();
      b = h.backend;
    });
    after(() => h.dispose());

    it('writes, commits, reports info and reads ranges', async () => {
      const data = Buffer.from('0123456789abcdefghij');
      const digest = await writeBlob(b, data, { labels: { 'x/a': '1' } });
      assert.equal(digest, sha256(data));
      const info = await b.content.info(digest);
      assert.equal(info.size, 20);
      assert.deepEqual(info.labels, { 'x/a': '1' });
      assert.deepEqual(await readAll(b.content.read(digest)), data);
      assert.equal((await readAll(b.content.read(digest, { offset: 5 }))).toString(), '56789abcdefghij');
      assert.equal((await readAll(b.content.read(digest, { offset: 5, length: 4 }))).toString(), '5678');
      assert.equal((await readAll(b.content.read(digest, { offset: 18, length: 100 }))).toString(), 'ij');
      assert.equal((await readAll(b.content.read(digest, { offset: 20 }))).length, 0);
      await rejectsWith(collect(b.content.read(digest, { offset: 21 })), ErrOutOfRange, '20');
      await rejectsWith(b.content.info('nope'), ErrInvalidArgument, 'nope');
      await rejectsWith(b.content.info(sha256('missing')), ErrNotFound, sha256('missing'));
    });

    it('resumes an ingest after close at the current offset', async () => {
      const data = randomBytes(3000);
      let w = await b.content.writer('resume-1', { total: 3000, expected: sha256(data) });
      await w.write(data.subarray(0, 1000));
      await w.close();
      const st = await b.content.status('resume-1');
      assert.equal(st.offset, 1000);
      assert.equal(st.total, 3000);
      assert.equal(st.ref, 'resume-1');
      w = await b.content.writer('resume-1');
      assert.equal(w.offset, 1000);
      await w.write(data.subarray(1000));
      assert.equal(await w.commit({ size: 3000, expected: sha256(data) }), sha256(data));
      assert.deepEqual(await readAll(b.content.read(sha256(data))), data);
      await rejectsWith(b.content.status('resume-1'), ErrNotFound, 'resume-1');
    });

    it('refuses a digest mismatch, naming both digests, and keeps the ingest until abort', async () => {
      const w = await b.content.writer('mismatch-1');
      await w.write(Buffer.from('actual'));
      const wrong = sha256('other');
      await rejectsWith(w.commit({ expected: wrong }), ErrFailedPrecondition, wrong, sha256('actual'));
      assert.equal((await b.content.status('mismatch-1')).offset, 6);
      await rejectsWith(b.content.info(sha256('actual')), ErrNotFound);
      await b.content.abort('mismatch-1');
      await rejectsWith(b.content.status('mismatch-1'), ErrNotFound);
      await rejectsWith(b.content.abort('mismatch-1'), ErrNotFound, 'mismatch-1');
    });

    it('refuses a size mismatch', async () => {
      const w = await b.content.writer('size-1');
      await w.write(Buffer.from('0123456789'));
      await rejectsWith(w.commit({ size: 99 }), ErrFailedPrecondition, '10 != 99');
      assert.equal((await b.content.status('size-1')).offset, 10);
      await b.content.abort('size-1');
    });

    it('locks a ref to one writer at a time', async () => {
      const w = await b.content.writer('lock-1');
      await rejectsWith(b.content.writer('lock-1'), ErrUnavailable, 'lock-1', 'locked');
      await w.close();
      const w2 = await b.content.writer('lock-1');
      await w2.close();
      await b.content.abort('lock-1');
    });

    it('treats committing an existing blob as success and leases it', async () => {
      const data = 'existing-blob';
      const digest = await writeBlob(b, data);
      await b.leases.create('l-existing');
      assert.equal(await writeBlob(b, data, { lease: 'l-existing' }), digest);
      assert.deepEqual(await b.leases.listResources('l-existing'), [{ type: 'content', id: digest }]);
      await b.leases.create('l-existing2');
      const existing = await b.content.writer('exp-1', { expected: digest, lease: 'l-existing2' });
      assert.equal(existing.exists, true);
      await existing.write(Buffer.from('ignored'));
      assert.equal(await existing.commit({ expected: digest }), digest);
      assert.deepEqual(await b.leases.listResources('l-existing2'), [{ type: 'content', id: digest }]);
      await rejectsWith(b.content.writer('exp-2', { lease: 'no-such-lease' }), ErrNotFound, 'no-such-lease');
    });

    it('updates labels only, walks with filters, deletes', async () => {
      const digest = await writeBlob(b, 'labelled', { labels: { 'x/keep': '1', 'x/drop': '2' } });
      let info = await b.content.update({ digest, labels: { 'x/new': '3' } }, ['labels.x/drop', 'labels.x/new']);
      assert.deepEqual(info.labels, { 'x/keep': '1', 'x/new': '3' });
      info = await b.content.update({ digest, labels: { only: 'this' } });
      assert.deepEqual(info.labels, { only: 'this' });
      await rejectsWith(b.content.update({ digest, labels: {} }, ['size']), ErrInvalidArgument, 'size');
      await rejectsWith(b.content.update({ digest, labels: { 'containerd.io/gc.root': '' } }), ErrInvalidArgument);
      const found = await collect(b.content.walk(['labels.only==this']));
      assert.deepEqual(found.map((i) => i.digest), [digest]);
      assert.ok((await collect(b.content.walk())).length > 1);
      await b.content.delete(digest);
      await rejectsWith(b.content.info(digest), ErrNotFound);
      await rejectsWith(b.content.delete(digest), ErrNotFound);
    });

    it('lists ingest statuses with filters', async () => {
      const a = await b.content.writer('st-alpha');
      const c = await b.content.writer('other-beta');
      await a.write(Buffer.from('12'));
      await Promise.all([a.close(), c.close()]);
      const list = await b.content.listStatuses(['ref~=^st-']);
      assert.deepEqual(list.map((s) => [s.ref, s.offset]), [['st-alpha', 2]]);
      await b.content.abort('st-alpha');
      await b.content.abort('other-beta');
    });

    it('stores a 100 MB blob with the right sha256', async () => {
      const chunk = randomBytes(1 << 20);
      const hash = createHash('sha256');
      const w = await b.content.writer('big-1');
      for (let i = 0; i < 100; i++) {
        chunk[0] = i;
        hash.update(chunk);
        await w.write(chunk);
      }
      const expected = `sha256:${hash.digest('hex')}`;
      assert.equal(await w.commit({ size: 100 << 20, expected }), expected);
      const back = createHash('sha256');
      let n = 0;
      for await (const c of b.content.read(expected)) {
        back.update(c);
        n += c.byteLength;
      }
      assert.equal(n, 100 << 20);
      assert.equal(`sha256:${back.digest('hex')}`, expected);
      await b.content.delete(expected);
    });
  });
}

describe('content: embedded write offsets', () => {
  let h: Harness;
  before(async () => {
    h = await embeddedFactory('native')();
  });
  after(() => h.dispose());

  it('refuses a write at a wrong offset; offset 0 restarts the ingest', async () => {
    const w = (await h.backend.content.writer('off-1')) as ContentWriter & { write(c: Uint8Array, at?: number): Promise<void> };
    await w.write(Buffer.from('0123456789'), 0);
    await rejectsWith(w.write(Buffer.from('x'), 5), ErrOutOfRange, '@5', '10');
    await w.write(Buffer.from('abc'), 10);
    assert.equal(w.offset, 13);
    await w.write(Buffer.from('new'), 0);
    assert.equal(w.offset, 3);
    assert.equal(await w.commit(), sha256('new'));
  });
});

contentSuite('embedded', embeddedFactory((await availableDrivers())[0]!));
