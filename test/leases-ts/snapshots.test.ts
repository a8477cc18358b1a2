/** Snapshots service on overlayfs and native: every RPC and the error table of the reference. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound, ErrNotImplemented,
} from '@buildcache/errdefs';
import { collect, leasedTestClient, uid, withMounted } from './helpers.js';

const { client } = leasedTestClient('lts-snap');

for (const snapshotter of ['overlayfs', 'native']) {
  test(`${snapshotter}: prepare, write, commit, stat, view, usage, list, update, remove`, async () => {
    const ss = client.snapshots(snapshotter);
    const a = uid('a');
    const base = uid('base');
    const mounts = await ss.prepare(a, undefined, { labels: { dropped: 'yes' } });
    assert.equal(mounts.length, 1);
    assert.equal(mounts[0]?.type, 'bind');
    assert.ok(mounts[0]?.options.includes('rw'));
    assert.deepEqual(await ss.mounts(a), mounts);
    await withMounted(mounts, (dir) => writeFile(join(dir, 'hello.txt'), 'hello from base'));
    const active = await ss.stat(a);
    assert.equal(active.kind, 'active');
    assert.equal(active.parent, undefined);
    assert.equal(active.labels.dropped, 'yes');

    await ss.commit(base, a, { labels: { layer: '0' } });
    await assert.rejects(ss.stat(a), ErrNotFound);
    const committed = await ss.stat(base);
    assert.equal(committed.kind, 'committed');
    assert.deepEqual(committed.labels, { layer: '0' }, 'only the labels given to Commit are stored');
    assert.ok(committed.createdAt.getTime() > 0 && committed.updatedAt.getTime() >= committed.createdAt.getTime());
    const usage = await ss.usage(base);
    assert.ok(usage.size >= 15 && usage.inodes >= 1, JSON.stringify(usage));

    const child = uid('child');
    const childMounts = await ss.prepare(child, base);
    await withMounted(childMounts, async (dir) => {
      assert.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'hello from base');
      await writeFile(join(dir, 'child.txt'), 'child');
    });
    assert.equal((await ss.stat(child)).parent, base);

    const view = uid('view');
    const viewMounts = await ss.view(view, base);
    assert.ok(viewMounts[0]?.options.includes('ro'));
    await withMounted(viewMounts, async (dir) => {
      assert.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'hello from base');
      await assert.rejects(writeFile(join(dir, 'x'), 'x'), /EROFS/);
    });
    assert.equal((await ss.stat(view)).kind, 'view');

    const names = (await collect(ss.list())).map((i) => i.name).sort();
    assert.deepEqual(names, [base, child, view].sort());
    assert.deepEqual((await collect(ss.list([`parent==${base}`]))).map((i) => i.name).sort(), [child, view].sort());
    assert.deepEqual((await collect(ss.list(['labels.layer==0']))).map((i) => i.name), [base]);

    const u1 = await ss.update({ name: base, labels: { extra: 'e' } }, ['labels.extra']);
    assert.deepEqual(u1.labels, { layer: '0', extra: 'e' });
    const u2 = await ss.update({ name: base, labels: {} }, ['labels.layer']);
    assert.deepEqual(u2.labels, { extra: 'e' });
    const u3 = await ss.update({ name: base, labels: { only: '1' } });
    assert.deepEqual(u3.labels, { only: '1' });

    await assert.rejects(ss.remove(base), ErrFailedPrecondition);
    await ss.remove(view);
    await ss.remove(child);
    await ss.remove(base);
    await assert.rejects(ss.stat(base), ErrNotFound);
  });
}

test('snapshot error table (overlayfs)', async () => {
  const ss = client.snapshots('overlayfs');
  const a = uid('a');
  const c1 = uid('c1');
  await ss.prepare(a);
  // duplicate key
  await assert.rejects(ss.prepare(a), (err: unknown) => {
    assert.ok(err instanceof ErrAlreadyExists);
    assert.equal(err.details.method, 'Snapshots/Prepare');
    assert.equal(err.details.key, a);
    assert.match(err.message, /already exists/);
    return true;
  });
  await assert.rejects(ss.view(a), ErrAlreadyExists);
  // prepare on an active (non-committed) parent
  await assert.rejects(ss.prepare(uid('b'), a), ErrInvalidArgument);
  await ss.commit(c1, a);
  // commit to an existing name
  const a2 = uid('a2');
  await ss.prepare(a2, c1);
  await assert.rejects(ss.commit(c1, a2), ErrAlreadyExists);
  // missing parent
  await assert.rejects(ss.prepare(uid('b'), uid('nonexist')), (err: unknown) => {
    assert.ok(err instanceof ErrNotFound);
    assert.match(err.message, /does not exist/);
    return true;
  });
  // mounts of a committed snapshot
  await assert.rejects(ss.mounts(c1), ErrFailedPrecondition);
  // commit a view
  const v = uid('v');
  await ss.view(v, c1);
  await assert.rejects(ss.commit(uid('n'), v), ErrFailedPrecondition);
  // remove a parent with a child
  await assert.rejects(ss.remove(c1), (err: unknown) => {
    assert.ok(err instanceof ErrFailedPrecondition);
    assert.match(err.message, /cannot remove snapshot with child/);
    return true;
  });
  // missing key on every keyed call
  const missing = uid('missing');
  for (const call of [
    () => ss.stat(missing), () => ss.mounts(missing), () => ss.remove(missing), () => ss.usage(missing),
    () => ss.update({ name: missing, labels: {} }), () => ss.commit(uid('n'), missing),
  ]) {
    await assert.rejects(call(), ErrNotFound);
  }
  // immutable field
  await assert.rejects(ss.update({ name: c1, labels: {} }, ['parent']), ErrInvalidArgument);
  // empty key is refused before it is sent
  await assert.rejects(ss.prepare(''), ErrInvalidArgument);
  // snapshot.ref of an existing target
  await assert.rejects(
    ss.prepare(uid('t'), undefined, { labels: { 'containerd.io/snapshot.ref': c1 } }),
    ErrAlreadyExists,
  );
  // unknown snapshotter
  await assert.rejects(client.snapshots('nosuch').stat(c1), ErrInvalidArgument);
  // bad filter: the stream answers UNKNOWN with an errdefs suffix, mapped by that suffix
  await assert.rejects(collect(ss.list(['name~="x'])), (err: unknown) => {
    assert.ok(err instanceof ErrInvalidArgument);
    assert.equal(err.details.method, 'Snapshots/List');
    assert.equal(err.details.grpcCode, 2);
    return true;
  });
  // Cleanup is not exposed by containerd 1.6's metadata layer
  await assert.rejects(ss.cleanup(), ErrNotImplemented);
  for (const k of [v, a2]) await ss.remove(k);
  await ss.remove(c1);
});

test('list streams more than one batch and stops early when the loop breaks', async () => {
  const ss = client.snapshots('native');
  const prefix = uid('many');
  const keys = Array.from({ length: 230 }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);
  for (const k of keys) await ss.view(k);
  const listed = await collect(ss.list([`name~="^${prefix}-"`]));
  assert.equal(listed.length, keys.length);
  let seen = 0;
  for await (const _ of ss.list()) {
    if (++seen === 5) break;
  }
  assert.equal(seen, 5);
  for (const k of keys) await ss.remove(k);
});
