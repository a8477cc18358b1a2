/**
 * The registry client against a real Debian docker-registry 2.8 on loopback: push blobs
 * (monolithic, chunked, mount, skip existing) and manifests (tag, digest), resolve by tag and
 * digest (OCI, Docker v2s2, index by platform), GET/HEAD/range reads, typed errors on bad input.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { ErrDigestMismatch, ErrInvalidArgument, ErrNotFound, ErrOutOfRange } from '@buildcache/errdefs';
import { MediaType, RegistryClient, type Descriptor } from '@buildcache/registry';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { collect, configBlob, indexBytes, manifestBytes, randomBlob, sha } from './helpers.js';

describe('registry client against docker-registry 2.8', () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient({ retryDelayMs: 10 });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  test('push a blob and a manifest, then resolve and pull them back by tag and by digest', async () => {
    const repo = `${reg.host}/roundtrip/app`;
    const layer = randomBlob(300_000);
    const config = configBlob();
    assert.equal((await client.pushBlob(repo, layer.descriptor, layer.bytes)).status, 'uploaded');
    assert.equal((await client.pushBlob(repo, config.descriptor, config.bytes)).status, 'uploaded');
    const m = manifestBytes(config.descriptor, [layer.descriptor]);
    const pushed = await client.pushManifest(`${repo}:v1`, m.bytes, m.mediaType);
    assert.deepEqual(pushed, { mediaType: MediaType.OCI_MANIFEST, digest: m.digest, size: m.bytes.length });

    const byTag = await client.resolve(`${repo}:v1`);
    assert.equal(byTag.descriptor.digest, m.digest);
    assert.equal(byTag.reference.digest, m.digest);
    assert.ok(byTag.bytes.equals(m.bytes), 'the exact manifest bytes come back');
    assert.deepEqual(byTag.manifest.layers, [layer.descriptor]);
    const byDigest = await client.resolve(`${repo}@${m.digest}`);
    assert.ok(byDigest.bytes.equals(m.bytes));

    const pulled = await collect(client.fetchBlob(repo, byTag.manifest.layers[0] as Descriptor));
    assert.ok(pulled.equals(layer.bytes), 'the layer comes back byte for byte');
    assert.ok((await client.readBlob(repo, byTag.manifest.config)).equals(config.bytes));
    assert.deepEqual(await client.headBlob(repo, layer.descriptor.digest), { mediaType: 'application/octet-stream', digest: layer.descriptor.digest, size: 300_000 });
    assert.deepEqual(await client.headManifest(`${repo}:v1`), { mediaType: MediaType.OCI_MANIFEST, digest: m.digest, size: m.bytes.length });

    // by digest only (no tag): the manifest is reachable by its digest and not by a tag
    const m2 = manifestBytes(config.descriptor, [layer.descriptor], true);
    await client.pushManifest(`${repo}@${m2.digest}`, m2.bytes, m2.mediaType);
    const docker = await client.getManifest(`${repo}@${m2.digest}`);
    assert.equal(docker.descriptor.mediaType, MediaType.DOCKER_MANIFEST);
    assert.ok(docker.bytes.equals(m2.bytes));
  });

  test('range reads: readAt and openBlob return exactly the bytes asked for', async () => {
    const repo = `${reg.host}/ranges/app`;
    const blob = randomBlob(1_000_003);
    await client.pushBlob(repo, blob.descriptor, blob.bytes);
    for (const [off, len] of [[0, 1], [0, 100_000], [123_457, 65_536], [1_000_000, 3], [999_999, 0]] as const) {
      const got = await client.readAt(repo, blob.descriptor, off, len);
      assert.ok(got.equals(blob.bytes.subarray(off, off + len)), `bytes ${off}+${len}`);
    }
    const remote = await client.openBlob(repo, blob.descriptor.digest);
    assert.equal(remote.size, 1_000_003);
    assert.ok((await remote.readAt(500_000, 10)).equals(blob.bytes.subarray(500_000, 500_010)));
    assert.ok((await collect(remote.stream())).equals(blob.bytes));
    await assert.rejects(remote.readAt(1_000_000, 4), ErrOutOfRange);
    await assert.rejects(client.readAt(repo, blob.descriptor, -1, 4), ErrOutOfRange);
  });

  test('chunked upload from a stream factory, and a second push is skipped after HEAD', async () => {
    const repo = `${reg.host}/chunked/app`;
    const blob = randomBlob(250_000);
    const source = (): Readable => Readable.from([blob.bytes.subarray(0, 70_000), blob.bytes.subarray(70_000)]);
    const first = await client.pushBlob(repo, blob.descriptor, source, { chunkSize: 64 * 1024 });
    assert.equal(first.status, 'uploaded');
    assert.ok((await collect(client.fetchBlob(repo, blob.descriptor))).equals(blob.bytes));
    const again = await client.pushBlob(repo, blob.descriptor, source);
    assert.equal(again.status, 'exists');
  });

  test('cross-repository mount: the blob is linked, not uploaded; unknown source falls back to upload', async () => {
    const blob = randomBlob(40_000);
    await client.pushBlob(`${reg.host}/mount/src`, blob.descriptor, blob.bytes);
    const mounted = await client.pushBlob(`${reg.host}/mount/dst`, blob.descriptor, blob.bytes, { mountFrom: 'mount/src' });
    assert.equal(mounted.status, 'mounted');
    assert.ok((await client.readBlob(`${reg.host}/mount/dst`, blob.descriptor)).equals(blob.bytes));
    const other = randomBlob(1000);
    const uploaded = await client.pushBlob(`${reg.host}/mount/dst`, other.descriptor, other.bytes, { mountFrom: 'mount/src' });
    assert.equal(uploaded.status, 'uploaded');
  });

  test('an index resolves to the entry for the platform asked (default: this machine), attestations skipped', async () => {
    const repo = `${reg.host}/multi/app`;
    const entries: Descriptor[] = [];
    const byArch = new Map<string, string>();
    for (const [architecture, variant] of [['amd64', undefined], ['arm64', 'v8'], ['arm', 'v7']] as const) {
      const platform = { os: 'linux', architecture, ...(variant ? { variant } : {}) };
      const config = configBlob(platform);
      const layer = randomBlob(100);
      await client.pushBlob(repo, config.descriptor, config.bytes);
      await client.pushBlob(repo, layer.descriptor, layer.bytes);
      const m = manifestBytes(config.descriptor, [layer.descriptor]);
      await client.pushManifest(`${repo}@${m.digest}`, m.bytes, m.mediaType);
      entries.push({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform });
      byArch.set(architecture, m.digest);
    }
    const amd = entries[0] as Descriptor;
    entries.unshift({ ...amd, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } });
    const idx = indexBytes(entries);
    await client.pushManifest(`${repo}:multi`, idx.bytes, idx.mediaType);

    const arm = await client.resolve(`${repo}:multi`, { platform: { os: 'linux', architecture: 'aarch64' } });
    assert.equal(arm.descriptor.digest, byArch.get('arm64'));
    assert.equal(arm.reference.digest, idx.digest, 'the reference keeps the index digest');
    assert.equal(arm.index?.descriptor.digest, idx.digest);
    const armv7 = await client.resolve(`${repo}:multi`, { platform: { os: 'linux', architecture: 'arm' } });
    assert.equal(armv7.descriptor.digest, byArch.get('arm'));
    const here = await client.resolve(`${repo}:multi`);
    const hostArch = process.arch === 'x64' ? 'amd64' : process.arch;
    if (byArch.has(hostArch)) assert.equal(here.descriptor.digest, byArch.get(hostArch));
    await assert.rejects(client.resolve(`${repo}:multi`, { platform: { os: 'windows', architecture: 'amd64' } }), (err: unknown) => {
      assert.ok(err instanceof ErrNotFound);
      assert.match(err.message, /windows\/amd64/);
      assert.match(err.message, new RegExp(idx.digest));
      return true;
    });

    // a Docker manifest list resolves the same way
    const list = indexBytes(entries.slice(1).map((e) => ({ ...e })), true);
    await client.pushManifest(`${repo}:list`, list.bytes, list.mediaType);
    const viaList = await client.resolve(`${repo}:list`, { platform: { os: 'linux', architecture: 'x86_64' } });
    assert.equal(viaList.descriptor.digest, byArch.get('amd64'));
  });

  test('missing things are ErrNotFound naming the reference and digest', async () => {
    const repo = `${reg.host}/missing/app`;
    const digest = sha(Buffer.from('nothing here'));
    await assert.rejects(client.getManifest(`${repo}:nope`), (err: unknown) => {
      assert.ok(err instanceof ErrNotFound);
      assert.match(err.message, /missing\/app:nope/);
      assert.equal(err.details.reference, `${repo}:nope`);
      return true;
    });
    await assert.rejects(client.headBlob(repo, digest), (err: unknown) => err instanceof ErrNotFound && err.details.digest === digest && err.message.includes(digest));
    await assert.rejects(collect(client.fetchBlob(repo, digest)), (err: unknown) => err instanceof ErrNotFound && err.message.includes(digest));
    assert.equal(await client.blobExists(repo, digest), false);
  });

  test('bad input is refused before anything is sent', async () => {
    const repo = `${reg.host}/bad/app`;
    const blob = randomBlob(1000);
    const wrong = { ...blob.descriptor, digest: sha(Buffer.from('other')) };
    await assert.rejects(client.pushBlob(repo, wrong, blob.bytes), ErrDigestMismatch);
    await assert.rejects(client.pushBlob(repo, { ...blob.descriptor, size: 999 }, blob.bytes), ErrDigestMismatch);
    assert.equal(await client.blobExists(repo, wrong.digest), false);
    // a stream that does not match: the upload fails and nothing is stored
    await assert.rejects(client.pushBlob(repo, wrong, () => Readable.from([blob.bytes])), ErrDigestMismatch);
    assert.equal(await client.blobExists(repo, wrong.digest), false);
    assert.equal(await client.blobExists(repo, blob.descriptor.digest), false);
    const m = manifestBytes(blob.descriptor, []);
    await assert.rejects(client.pushManifest(`${repo}@${sha(Buffer.from('x'))}`, m.bytes, m.mediaType), ErrDigestMismatch);
    await assert.rejects(client.pushManifest(`${repo}:t`, m.bytes, MediaType.DOCKER_MANIFEST), ErrInvalidArgument);
    await assert.rejects(client.headBlob(repo, 'sha256:abc'), ErrInvalidArgument);
    // the registry refuses a manifest whose blobs are missing: a typed error with its code
    await assert.rejects(client.pushManifest(`${repo}:t`, m.bytes, m.mediaType), (err: unknown) => err instanceof ErrInvalidArgument && err.details.registryCode === 'MANIFEST_BLOB_UNKNOWN');
    await assert.rejects(client.getManifest(`${repo}:t`), ErrNotFound);
  });
});
