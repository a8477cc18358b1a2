/** Leases, namespaces, version and introspection against the run's private containerd. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ErrAlreadyExists, ErrInvalidArgument, ErrNotFound, ErrNotImplemented, ErrClosed } from '@buildcache/errdefs';
import { Client } from '@containerd/leases-ts';
import { containerdAddress } from '../harness/containerd.js';
import { collect, sha256, syncGC, testClient, uid } from './helpers.js';

const client = testClient('lts-leases');
after(() => client.close());

test('create, list (with filters), delete leases', async () => {
  const id = uid('l');
  const lease = await client.leases.create(id, { 'containerd.io/gc.flat': new Date().toISOString(), team: 'a' });
  assert.equal(lease.id, id);
  assert.ok(lease.createdAt.getTime() > Date.now() - 60_000);
  assert.equal(lease.labels.team, 'a');
  await assert.rejects(client.leases.create(id), ErrAlreadyExists);
  const generated = await client.leases.create('');
  assert.ok(generated.id.length > 0, 'the daemon generates an id');

  const all = await client.leases.list();
  assert.ok(all.some((l) => l.id === id) && all.some((l) => l.id === generated.id));
  const filtered = await client.leases.list(['labels.team==a']);
  assert.deepEqual(filtered.map((l) => l.id), [id]);

  await client.leases.delete(id);
  await client.leases.delete(generated.id, { sync: true });
  await assert.rejects(client.leases.delete(id), (err: unknown) => {
    assert.ok(err instanceof ErrNotFound);
    assert.equal(err.details.method, 'Leases/Delete');
    assert.equal(err.details.id, id);
    return true;
  });
});

test('add, list and delete lease resources', async () => {
  const id = uid('l');
  await client.leases.create(id);
  const digest = sha256(Buffer.from('not stored yet'));
  await client.leases.addResource(id, { id: digest, type: 'content' });
  await client.leases.addResource(id, { id: 'some-key', type: 'snapshots/overlayfs' });
  await client.leases.addResource(id, { id: 'some-ref', type: 'ingests' });
  const resources = await client.leases.listResources(id);
  assert.deepEqual(
    [...resources].sort((a, b) => a.type.localeCompare(b.type)),
    [{ id: digest, type: 'content' }, { id: 'some-ref', type: 'ingests' }, { id: 'some-key', type: 'snapshots/overlayfs' }],
  );
  await client.leases.deleteResource(id, { id: 'some-key', type: 'snapshots/overlayfs' });
  assert.equal((await client.leases.listResources(id)).length, 2);
  // The proto comment's `snapshotter/<name>` form is not what containerd accepts.
  await assert.rejects(client.leases.addResource(id, { id: 'k', type: 'snapshotter/overlayfs' }), ErrNotImplemented);
  await assert.rejects(client.leases.listResources(uid('missing')), ErrNotFound);
  await client.leases.delete(id);
});

test('empty containerd.io/gc.* labels are refused client-side', async () => {
  await assert.rejects(client.leases.create(uid('l'), { 'containerd.io/gc.flat': '' }), ErrInvalidArgument);
  await assert.rejects(
    client.snapshots('overlayfs').prepare(uid('k'), undefined, { labels: { 'containerd.io/gc.root': '' } }),
    ErrInvalidArgument,
  );
  await assert.rejects(client.content.update({ digest: sha256(Buffer.from('x')), labels: { 'containerd.io/gc.ref.content.0': '' } }), ErrInvalidArgument);
  // Other empty labels are the caller's business.
  const id = uid('l');
  await client.leases.create(id, { other: '' });
  await client.leases.delete(id);
});

test('a call without a namespace cannot be made through the client', () => {
  const address = containerdAddress();
  assert.throws(() => Client.connect({ address, namespace: '' }), ErrInvalidArgument);
  assert.throws(() => Client.connect({ address, namespace: 'Bad_NS!' }), ErrInvalidArgument);
  assert.throws(() => client.withNamespace(''), ErrInvalidArgument);
  assert.equal(client.withLease('x').namespace, client.namespace);
});

test('the lease header keeps what a call creates through a synchronous GC', async () => {
  const lease = uid('keep');
  await client.leases.create(lease, { 'containerd.io/gc.flat': new Date().toISOString() });
  const leased = client.withLease(lease);
  const ss = client.snapshots('overlayfs');
  const kept = uid('kept');
  const lost = uid('lost');
  await leased.snapshots('overlayfs').prepare(kept);
  await ss.prepare(lost);
  const keptBlob = Buffer.from(`leased ${lease}`);
  const lostBlob = Buffer.from(`unleased ${lease}`);
  await leased.content.writeBlob(uid('w'), keptBlob, { expected: sha256(keptBlob) });
  await client.content.writeBlob(uid('w'), lostBlob, { expected: sha256(lostBlob) });
  assert.deepEqual(
    (await client.leases.listResources(lease)).map((r) => r.type).sort(),
    ['content', 'snapshots/overlayfs'],
  );

  await syncGC(client);
  assert.equal((await ss.stat(kept)).kind, 'active');
  await assert.rejects(ss.stat(lost), ErrNotFound);
  assert.equal((await client.content.info(sha256(keptBlob))).size, keptBlob.length);
  await assert.rejects(client.content.info(sha256(lostBlob)), ErrNotFound);

  await client.leases.delete(lease, { sync: true });
  await assert.rejects(ss.stat(kept), ErrNotFound);
  await assert.rejects(client.content.info(sha256(keptBlob)), ErrNotFound);
});

test('per-call lease option and an unknown lease', async () => {
  await assert.rejects(client.snapshots('native').prepare(uid('k'), undefined, { lease: uid('nope') }), (err: unknown) => {
    assert.ok(err instanceof ErrNotFound);
    assert.match(err.message, /lease does not exist/);
    return true;
  });
  const lease = uid('l');
  await client.leases.create(lease);
  const key = uid('k');
  await client.snapshots('native').prepare(key, undefined, { lease });
  assert.deepEqual(await client.leases.listResources(lease), [{ id: key, type: 'snapshots/native' }]);
  await client.snapshots('native').remove(key);
  await client.leases.delete(lease);
});

test('namespaces: create, get, list, update, delete', async () => {
  const name = uid('lts-ns');
  const ns = await client.namespaces.create(name, { owner: 'tests' });
  assert.deepEqual(ns, { name, labels: { owner: 'tests' } });
  await assert.rejects(client.namespaces.create(name), ErrAlreadyExists);
  assert.deepEqual(await client.namespaces.get(name), { name, labels: { owner: 'tests' } });
  assert.ok((await client.namespaces.list()).some((n) => n.name === name));
  const updated = await client.namespaces.update(name, { extra: '1' }, ['labels.extra']);
  assert.deepEqual(updated.labels, { owner: 'tests', extra: '1' });
  // A namespace that holds only leases may be deleted; the leases go with it.
  await client.withNamespace(name).leases.create(uid('l'));
  await client.namespaces.delete(name);
  assert.ok(!(await client.namespaces.list()).some((n) => n.name === name));
  await assert.rejects(client.namespaces.delete(name), ErrNotFound);
});

test('version and introspection', async () => {
  const v = await client.version();
  assert.match(v.version, /^\d+\.\d+/);
  const server = await client.introspection.server();
  assert.match(server.uuid, /^[0-9a-f-]{36}$/);
  const snapshotters = await client.introspection.plugins(['type==io.containerd.snapshotter.v1']);
  const overlay = snapshotters.find((p) => p.id === 'overlayfs');
  assert.ok(overlay && !overlay.initError, 'overlayfs loaded');
  assert.match(overlay.exports.root ?? '', /io\.containerd\.snapshotter\.v1\.overlayfs$/);
  assert.ok(snapshotters.find((p) => p.id === 'native' && !p.initError));
  const btrfs = snapshotters.find((p) => p.id === 'btrfs');
  if (btrfs) assert.ok(btrfs.initError && btrfs.initError.message.length > 0);
  const differ = await client.introspection.plugins(['id==walking']);
  assert.equal(differ[0]?.type, 'io.containerd.differ.v1');
  assert.equal((await collect(client.snapshots('overlayfs').list())).length, 0, 'fresh namespace is empty');
});

test('a closed client refuses calls with ErrClosed', async () => {
  const c = testClient('lts-closed');
  await c.version();
  await c.close();
  await assert.rejects(c.version(), ErrClosed);
  assert.ok(c.withLease('x').closed);
});
