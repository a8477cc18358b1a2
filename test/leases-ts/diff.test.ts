/** Diff service: apply a real layer onto a prepared snapshot and diff a change back into a blob. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ErrNotFound, ErrUnknown } from '@buildcache/errdefs';
import { execFileP, sha256, leasedTestClient, uid, withMounted } from './helpers.js';

const { lease, client } = leasedTestClient('lts-diff');

async function makeTar(files: Record<string, string>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'leases-ts-tar-'));
  try {
    for (const [name, text] of Object.entries(files)) {
      await mkdir(join(dir, name, '..'), { recursive: true });
      await writeFile(join(dir, name), text);
    }
    const { stdout } = await execFileP('tar', ['-C', dir, '--numeric-owner', '-cf', '-', '.'], {
      encoding: 'buffer', maxBuffer: 64 << 20,
    });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function tarList(tar: Buffer): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'leases-ts-tarlist-'));
  try {
    await writeFile(join(dir, 'l.tar'), tar);
    const { stdout } = await execFileP('tar', ['-tf', join(dir, 'l.tar')]);
    return stdout.split('\n').filter(Boolean).map((p) => p.replace(/^\.\//, '').replace(/\/$/, ''));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const snapshotter of ['overlayfs', 'native']) {
  test(`${snapshotter}: apply a gzip layer, then diff a change against a view of it`, async () => {
    const ss = client.snapshots(snapshotter);
    const tar = await makeTar({ 'etc/greeting': 'hello', 'gone.txt': 'bye' });
    const gz = gzipSync(tar);
    const blob = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length };
    await client.content.writeBlob(uid('layer'), gz, { expected: blob.digest });

    const key = uid('apply');
    const mounts = await ss.prepare(key);
    const applied = await client.diff.apply(blob, mounts);
    assert.equal(applied.mediaType, 'application/vnd.oci.image.layer.v1.tar');
    assert.equal(applied.digest, sha256(tar), 'applied digest is the diffID');
    assert.equal(applied.size, tar.length);
    const base = uid('base');
    await ss.commit(base, key);

    const child = uid('child');
    const childMounts = await ss.prepare(child, base);
    await withMounted(childMounts, async (dir) => {
      assert.equal(await readFile(join(dir, 'etc/greeting'), 'utf8'), 'hello');
      await writeFile(join(dir, 'new.txt'), 'new file');
      await unlink(join(dir, 'gone.txt'));
    });
    const lower = uid('lower');
    const lowerMounts = await ss.view(lower, base);
    const ref = uid('diffref');
    const desc = await client.diff.diff(lowerMounts, childMounts, { ref, labels: { made: 'by-test' } });
    assert.equal(desc.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    const stored = await client.content.readBlob(desc.digest);
    assert.equal(sha256(stored), desc.digest);
    assert.equal(stored.length, desc.size);
    const info = await client.content.info(desc.digest);
    assert.equal(info.labels.made, 'by-test');
    const diffTar = gunzipSync(stored);
    assert.equal(info.labels['containerd.io/uncompressed'], sha256(diffTar));
    const entries = await tarList(diffTar);
    assert.ok(entries.includes('new.txt'), entries.join(','));
    assert.ok(entries.includes('.wh.gone.txt'), entries.join(','));
    assert.ok(!entries.includes('etc/greeting'));
    assert.ok((await client.leases.listResources(lease)).some((r) => r.id === desc.digest), 'diff blob is leased');

    // uncompressed, against nothing: a full layer of the child
    const full = await client.diff.diff([], childMounts, { mediaType: 'application/vnd.oci.image.layer.v1.tar' });
    const fullEntries = await tarList(await client.content.readBlob(full.digest));
    assert.ok(fullEntries.includes('etc/greeting') && fullEntries.includes('new.txt'));

    for (const k of [lower, child]) await ss.remove(k);
    await ss.remove(base);
  });
}

test('apply errors: missing blob, unknown media type', async () => {
  const ss = client.snapshots('overlayfs');
  const key = uid('bad');
  const mounts = await ss.prepare(key);
  const missing = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(Buffer.from('nope')), size: 4 };
  await assert.rejects(client.diff.apply(missing, mounts), (err: unknown) => {
    assert.ok(err instanceof ErrNotFound);
    assert.equal(err.details.method, 'Diff/Apply');
    assert.equal(err.details.digest, missing.digest);
    return true;
  });
  const data = Buffer.from('not a tar');
  await client.content.writeBlob(uid('w'), data, { expected: sha256(data) });
  await assert.rejects(
    client.diff.apply({ mediaType: 'application/x-bogus', digest: sha256(data), size: data.length }, mounts),
    ErrUnknown,
  );
  await ss.remove(key);
});
