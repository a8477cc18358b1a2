/**
 * Long calls on every backend: applying and diffing a layer and streaming blobs are bound by no
 * call deadline (they still work on a backend whose default deadlines are 1 ms), and an apply whose
 * signal aborts stops with ErrCanceled, leaving the layer unfinished.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrCanceled } from '@buildcache/errdefs';
import { MEDIA_TYPE_LAYER } from '@buildcache/snapshot';
import type { Backend } from '@buildcache/snapshot';
import { backendKinds, openFixture, ownDir, readBlob, rejectsWith, sha256, writeBlob } from './helpers.js';
import type { Fixture } from './helpers.js';
import { tarArchive } from './tarwriter.js';
import type { RawEntry } from './tarwriter.js';

/** A plain tar of `dirs` directories of `files` files of `bytes` random bytes each. */
function layer(dirs: number, files: number, bytes: number): Buffer {
  const entries: RawEntry[] = [];
  for (let d = 0; d < dirs; d++) {
    entries.push({ name: `d${d}/`, type: '5' });
    for (let i = 0; i < files; i++) entries.push({ name: `d${d}/f${i}`, type: '0', data: randomBytes(bytes) });
  }
  return tarArchive(entries);
}

/** Writes `bytes` through `backend`'s content writer in 1 MiB chunks; returns the digest. */
async function writeChunked(backend: Backend, bytes: Buffer, lease: string): Promise<string> {
  const digest = sha256(bytes);
  const w = await backend.content.writer(`long-${digest.slice(7, 23)}`, { lease, total: bytes.length, expected: digest });
  for (let at = 0; at < bytes.length; at += 1 << 20) await w.write(bytes.subarray(at, at + (1 << 20)));
  return w.commit({ size: bytes.length, expected: digest });
}

/** Every entry under `dir`, recursively. */
async function countEntries(dir: string): Promise<number> {
  return (await readdir(dir, { recursive: true })).length;
}

for (const kind of backendKinds()) {
  describe(`long calls [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    it('apply, diff and content reads and writes are not cut by the default call deadlines', async () => {
      const tight = f.tb.withDeadlines(1);
      const tar = layer(8, 250, 4096); // 2,008 entries, ~9 MB
      const digest = await writeChunked(tight, tar, f.lease);
      assert.equal(digest, sha256(tar));
      const key = f.name('long');
      const mounts = await f.backend.snapshotter.prepare(`${key}-active`, undefined, f.leased);
      const applied = await tight.applier.apply({ mediaType: MEDIA_TYPE_LAYER, digest, size: tar.length }, mounts);
      assert.equal(applied.digest, digest, 'the diffID of a plain tar is its digest');
      await f.backend.snapshotter.commit(key, `${key}-active`, f.leased);
      const view = await f.backend.snapshotter.view(f.name('long-view'), key, f.leased);
      const diff = await tight.differ.compare([], view, { ...f.leased, mediaType: MEDIA_TYPE_LAYER });
      const bytes = await readBlob(tight, diff.digest);
      assert.equal(sha256(bytes), diff.digest);
      assert.ok(bytes.length >= 8 * 250 * 4096, `the diff holds every file (${bytes.length} bytes)`);
    });

    it('an apply whose signal aborts stops with ErrCanceled and leaves the layer unfinished', async () => {
      const tar = layer(100, 200, 0); // 20,100 entries
      const digest = await writeBlob(f.backend, tar, f.leased);
      const key = f.name('cancel');
      const mounts = await f.backend.snapshotter.prepare(key, undefined, f.leased);
      const dir = ownDir(mounts);
      const ac = new AbortController();
      const applying = f.backend.applier.apply({ mediaType: MEDIA_TYPE_LAYER, digest, size: tar.length }, mounts, { signal: ac.signal });
      let settled = false;
      applying.then(() => (settled = true), () => (settled = true));
      // abort once the apply has written its first entry
      for (let i = 0; i < 6000 && !settled && (await countEntries(dir)) === 0; i++) await delay(5);
      ac.abort(new Error('the test aborts'));
      await rejectsWith(applying, ErrCanceled, 'aborted apply');
      const written = await countEntries(dir);
      assert.ok(written < 20_100, `the apply stopped early (${written} of 20,100 entries)`);
      await f.backend.snapshotter.remove(key);
    });
  });
}
