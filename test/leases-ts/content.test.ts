/** Content service: info/update/list/delete, range reads, writes (resume, errors) and a 100 MB blob. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound, ErrOutOfRange, ErrUnavailable,
} from '@buildcache/errdefs';
import { collect, sha256, leasedTestClient, uid } from './helpers.js';

const { client } = leasedTestClient('lts-content');

test('write, info, update, list, read ranges, delete', async () => {
  const data = Buffer.from('0123456789abcdefghij');
  const digest = sha256(data);
  const got = await client.content.writeBlob(uid('w'), data, { expected: digest, labels: { origin: 'test' } });
  assert.equal(got, digest);
  const info = await client.content.info(digest);
  assert.equal(info.size, 20);
  assert.deepEqual(info.labels, { origin: 'test' });
  assert.ok(info.createdAt.getTime() > 0);

  const updated = await client.content.update({ digest, labels: { extra: 'x' } }, ['labels.extra']);
  assert.deepEqual(updated.labels, { origin: 'test', extra: 'x' });
  await assert.rejects(client.content.update({ digest, labels: {} }, ['size']), ErrInvalidArgument);

  assert.deepEqual((await collect(client.content.list())).map((i) => i.digest), [digest]);
  assert.deepEqual((await collect(client.content.list(['labels.extra==x']))).map((i) => i.digest), [digest]);
  assert.equal((await collect(client.content.list(['labels.extra==y']))).length, 0);

  // Offsets in the daemon's answers are relative to the requested offset; the client copes.
  assert.equal((await client.content.readBlob(digest, { offset: 5, length: 4 })).toString(), '5678');
  assert.equal((await client.content.readBlob(digest, { offset: 15 })).toString(), 'fghij');
  assert.equal((await client.content.readBlob(digest, { offset: 10, length: 1000 })).toString(), 'abcdefghij');
  assert.equal((await client.content.readBlob(digest, { offset: 20 })).length, 0);
  // read past end
  await assert.rejects(client.content.readBlob(digest, { offset: 21 }), ErrOutOfRange);
  await assert.rejects(client.content.readBlob(sha256(Buffer.from('missing'))), ErrNotFound);
  await assert.rejects(client.content.info('nope'), ErrInvalidArgument);

  await client.content.delete(digest);
  await assert.rejects(client.content.delete(digest), (err: unknown) => {
    assert.ok(err instanceof ErrNotFound);
    assert.equal(err.details.digest, digest);
    assert.equal(err.details.method, 'Content/Delete');
    return true;
  });
});

test('writing an existing blob is a success (open and commit)', async () => {
  const data = randomBytes(1000);
  const digest = sha256(data);
  await client.content.writeBlob(uid('w'), data, { expected: digest });
  const w = await client.content.writer(uid('w'), { expected: digest, total: data.length });
  assert.ok(w.exists);
  assert.equal(await w.commit(), digest);
  // Without `expected` at open the daemon only notices at commit.
  const w2 = await client.content.writer(uid('w'));
  await w2.write(data);
  assert.equal(await w2.commit({ size: data.length, expected: digest }), digest);
  const w3 = await client.content.writer(uid('w'));
  await w3.write(data);
  assert.equal(await w3.commit(), digest, 'digest taken from the ALREADY_EXISTS message');
});

test('commit errors: digest mismatch, size mismatch; the ingest stays until aborted', async () => {
  const data = Buffer.from('some content to commit');
  const ref = uid('bad');
  const w = await client.content.writer(ref);
  await w.write(data);
  await assert.rejects(w.commit({ expected: sha256(Buffer.from('other')) }), (err: unknown) => {
    assert.ok(err instanceof ErrFailedPrecondition);
    assert.match(err.message, /unexpected commit digest/);
    assert.equal(err.details.ref, ref);
    return true;
  });
  assert.equal((await client.content.status(ref)).offset, data.length);
  const w2 = await client.content.writer(ref);
  assert.equal(w2.offset, data.length);
  await assert.rejects(w2.commit({ size: 99 }), (err: unknown) => {
    assert.ok(err instanceof ErrFailedPrecondition);
    assert.match(err.message, /failed size validation/);
    return true;
  });
  await client.content.abort(ref);
  await assert.rejects(client.content.status(ref), ErrNotFound);
  await assert.rejects(client.content.abort(ref), ErrNotFound);
});

test('a write at the wrong offset is ErrOutOfRange; offset 0 restarts the ingest', async () => {
  const ref = uid('off');
  const w = await client.content.writer(ref);
  await w.write(Buffer.from('0123456789'));
  await w.close();
  const w2 = await client.content.writer(ref);
  assert.equal(w2.offset, 10);
  await w2.write(Buffer.from('xx'), 5);
  await assert.rejects(w2.commit(), (err: unknown) => {
    assert.ok(err instanceof ErrOutOfRange);
    assert.match(err.message, /must occur at current offset 10/);
    return true;
  });
  const w3 = await client.content.writer(ref);
  await w3.write(Buffer.from('fresh'), 0);
  assert.equal(await w3.commit({ size: 5, expected: sha256(Buffer.from('fresh')) }), sha256(Buffer.from('fresh')));
});

test('a second writer of the same ref gets ErrUnavailable (locked ingest)', async () => {
  const ref = uid('lock');
  const w = await client.content.writer(ref);
  await w.write(Buffer.from('abc'));
  await assert.rejects(client.content.writer(ref), (err: unknown) => {
    assert.ok(err instanceof ErrUnavailable);
    assert.match(err.message, /locked/);
    return true;
  });
  await w.write(Buffer.from('def'));
  assert.equal(await w.commit({ size: 6 }), sha256(Buffer.from('abcdef')));
});

test('a write resumes after a broken stream; status and listStatuses report it', async () => {
  const data = randomBytes(5 * 1024 * 1024 + 123);
  const digest = sha256(data);
  const ref = uid('resume');
  const w = await client.content.writer(ref, { total: data.length, expected: digest });
  await w.write(data.subarray(0, 3 * 1024 * 1024));
  await w.close(); // make sure those bytes landed, then break the next stream
  const broken = await client.content.writer(ref, { total: data.length, expected: digest });
  await broken.write(data.subarray(3 * 1024 * 1024, 3 * 1024 * 1024 + 100));
  broken.cancel();


  const started = Date.now();
  let resumed;
  for (;;) {
    try {
      resumed = await client.content.writer(ref, { total: data.length, expected: digest });
      break;
    } catch (err) {
      // The daemon may still hold the lock of the broken stream for a moment.
      if (!(err instanceof ErrUnavailable) || Date.now() - started > 10_000) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const status = await client.content.status(ref);
  assert.equal(status.ref, ref);
  assert.equal(status.total, data.length);
  assert.ok(status.offset >= 3 * 1024 * 1024 && status.offset <= 3 * 1024 * 1024 + 100, String(status.offset));
  assert.equal(resumed.offset, status.offset);
  assert.ok((await client.content.listStatuses([`ref~=^${ref}$`])).some((s) => s.ref === ref));
  await resumed.write(data.subarray(resumed.offset));
  assert.equal(await resumed.commit(), digest);
  assert.equal((await client.content.listStatuses([`ref~=^${ref}$`])).length, 0);
  assert.deepEqual(await client.content.readBlob(digest), data);
});

test('a 100 MB blob written in one go, read back by ranges with a matching sha256', async () => {
  const size = 100 * 1024 * 1024;
  const data = randomBytes(size);
  const digest = sha256(data);
  assert.equal(await client.content.writeBlob(uid('big'), data, { expected: digest }), digest);
  assert.equal((await client.content.info(digest)).size, size);
  const hash = createHash('sha256');
  const step = 7 * 1024 * 1024 + 13;
  let total = 0;
  for (let offset = 0; offset < size; offset += step) {
    let got = 0;
    for await (const chunk of client.content.read(digest, { offset, length: Math.min(step, size - offset) })) {
      assert.ok(chunk.length <= 1 << 20);
      assert.ok(chunk.equals(data.subarray(offset + got, offset + got + chunk.length)));
      hash.update(chunk);
      got += chunk.length;
    }
    total += got;
  }
  assert.equal(total, size);
  assert.equal('sha256:' + hash.digest('hex'), digest);
  await client.content.delete(digest);
});
