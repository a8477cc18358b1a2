/**
 * The OCI layout store of a local cache (`type=local,dest=DIR`): a blob takes its name only whole
 * and verified, concurrent puts of one blob leave it whole, and the tagged manifest leaves the
 * layout's files and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrDigestMismatch } from '@buildcache/errdefs';
import { LocalStore } from '@buildcache/remotecache';

const descOf = (b: Buffer): { mediaType: string; digest: string; size: number } => ({
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  digest: `sha256:${createHash('sha256').update(b).digest('hex')}`,
  size: b.length,
});

async function* pieces(b: Buffer, piece = 64 * 1024): AsyncGenerator<Buffer> {
  for (let at = 0; at < b.length; at += piece) yield b.subarray(at, at + piece);
}

test('local store: a wrong blob is refused and leaves nothing; concurrent puts of one blob leave it whole; the manifest leaves only the layout', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-local-store-'));
  try {
    const store = new LocalStore(dir);
    const blob = Buffer.alloc(1 << 20, 7);
    const desc = descOf(blob);
    await assert.rejects(store.putBlob(desc, () => pieces(Buffer.alloc(1 << 20, 8))), ErrDigestMismatch);
    assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256')), [], 'no blob and no partial file');
    assert.equal(await store.hasBlob(desc), false);

    const puts = await Promise.all([1, 2, 3].map(() => store.putBlob(desc, () => pieces(blob))));
    assert.ok(puts.some(Boolean));
    assert.ok((await readFile(join(dir, 'blobs', 'sha256', desc.digest.slice(7)))).equals(blob));

    const manifest = await store.putManifest(Buffer.from('{"schemaVersion":2}'), 'application/vnd.oci.image.manifest.v1+json');
    assert.ok((await store.getManifest()).equals(Buffer.from('{"schemaVersion":2}')));
    assert.deepEqual(await store.getTagged(), { desc: manifest, bytes: Buffer.from('{"schemaVersion":2}') }, 'the descriptor putManifest gave');
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
    assert.deepEqual((await readdir(join(dir, 'blobs', 'sha256'))).sort(), [desc.digest.slice(7), manifest.digest.slice(7)].sort());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('local store: blobs() lists the digests and sizes under blobs/sha256, skipping what is no blob; none for a directory not made yet', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-local-store-'));
  try {
    assert.deepEqual(await new LocalStore(join(dir, 'missing')).blobs(), new Map());
    const store = new LocalStore(dir);
    const a = Buffer.from('a blob');
    const b = Buffer.alloc(70_000, 1);
    for (const blob of [a, b]) await store.putBlob(descOf(blob), () => pieces(blob));
    const manifest = await store.putManifest(Buffer.from('{"schemaVersion":2}'), 'application/vnd.oci.image.manifest.v1+json');
    // Not blobs: a temporary name, a file whose name is no digest, a directory named like one.
    await writeFile(join(dir, 'blobs', 'sha256', `${descOf(a).digest.slice(7)}.tmp`), 'partial');
    await writeFile(join(dir, 'blobs', 'sha256', 'README'), 'x');
    await mkdir(join(dir, 'blobs', 'sha256', 'f'.repeat(64)));
    assert.deepEqual(
      await store.blobs(),
      new Map([[descOf(a).digest, a.length], [descOf(b).digest, b.length], [manifest.digest, manifest.size]]),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
