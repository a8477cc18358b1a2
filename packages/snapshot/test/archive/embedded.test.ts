/** EmbeddedApplier and EmbeddedDiffer over a content store and real mounts. */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrDigestMismatch, ErrInvalidArgument } from '@buildcache/errdefs';
import { EmbeddedApplier, EmbeddedDiffer, decompress } from '../../src/embedded/archive/index.js';
import { LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, compressionOf } from '../../src/labels.js';
import { LocalMounter } from '../../src/mount.js';
import type { Mount } from '../../src/types.js';
import { E, MemoryContentStore, buildTar, cleanup, collect, snapshotTree, tempDir } from './helpers.js';

after(cleanup);

const overlayMount = (lower: string, upper: string, work: string): Mount => ({
  type: 'overlay',
  source: 'overlay',
  options: [`workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`],
});

describe('EmbeddedApplier', () => {
  it('applies a gzip blob onto a rw bind and returns the diffID', async () => {
    const content = new MemoryContentStore();
    const tar = await buildTar([{ ...E, name: 'hello', type: 'file', body: 'world' }]);
    const digest = content.put(gzipSync(tar));
    const dir = await tempDir();
    const applier = new EmbeddedApplier(content, new LocalMounter(await tempDir()));
    const desc = await applier.apply({ mediaType: MEDIA_TYPE_LAYER_GZIP, digest, size: 0 }, [{ type: 'bind', source: dir, options: ['rw', 'rbind'] }]);
    assert.equal(desc.mediaType, MEDIA_TYPE_LAYER);
    assert.equal(desc.size, tar.length);
    assert.equal(desc.digest, `sha256:${(await import('node:crypto')).createHash('sha256').update(tar).digest('hex')}`);
    assert.equal(await readFile(join(dir, 'hello'), 'utf8'), 'world');
  });

  it('writes into the upperdir of an overlay mount (overlay-upper mode)', async () => {
    const content = new MemoryContentStore();
    const base = await tempDir();
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => join(base, d)) as [string, string, string];
    for (const d of [lower, upper, work]) await mkdir(d);
    await writeFile(join(lower, 'doomed'), 'x');
    const digest = content.put(await buildTar([{ ...E, name: '.wh.doomed', type: 'file', body: '' }]));
    const applier = new EmbeddedApplier(content, new LocalMounter(await tempDir()));
    await applier.apply({ mediaType: MEDIA_TYPE_LAYER, digest, size: 0 }, [overlayMount(lower, upper, work)]);
    const st = await (await import('node:fs/promises')).lstat(join(upper, 'doomed'));
    assert.ok(st.isCharacterDevice() && st.rdev === 0);
  });

  it('refuses unknown media types and blobs that do not match their digest', async () => {
    const content = new MemoryContentStore();
    const digest = content.put(await buildTar([{ ...E, name: 'f', type: 'file', body: 'f' }]));
    const applier = new EmbeddedApplier(content, new LocalMounter(await tempDir()));
    const dir = await tempDir();
    const mounts: Mount[] = [{ type: 'bind', source: dir, options: ['rw', 'rbind'] }];
    await assert.rejects(applier.apply({ mediaType: 'application/x-bogus', digest, size: 0 }, mounts), ErrInvalidArgument);
    content.blobs.get(digest)!.data = await buildTar([{ ...E, name: 'g', type: 'file', body: 'g' }]);
    await assert.rejects(applier.apply({ mediaType: MEDIA_TYPE_LAYER, digest, size: 0 }, mounts), ErrDigestMismatch);
  });
});

describe('EmbeddedDiffer', () => {
  for (const mediaType of [MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_ZSTD]) {
    it(`fast path and generic path store the same diffID (${mediaType.split('.').pop()})`, async () => {
      const content = new MemoryContentStore();
      const mounter = new LocalMounter(await tempDir());
      const base = await tempDir();
      const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => join(base, d)) as [string, string, string];
      for (const d of [lower, upper, work]) await mkdir(d);
      await mkdir(join(lower, 'd'));
      await writeFile(join(lower, 'd', 'a'), 'a');
      await writeFile(join(lower, 'd', 'b'), 'b');
      const upperMounts = [overlayMount(lower, upper, work)];
      const active = await mounter.mount(upperMounts);
      try {
        await rm(join(active.target, 'd', 'a'));
        await writeFile(join(active.target, 'd', 'c'), 'c');
      } finally {
        await active.unmount();
      }
      const lowerMounts: Mount[] = [{ type: 'bind', source: lower, options: ['ro', 'rbind'] }];
      const differ = new EmbeddedDiffer(content, mounter);
      const fast = await differ.compare(lowerMounts, upperMounts, { mediaType, labels: { 'test.label': 'x' }, lease: 'L1' });
      const labels = { ...content.blobs.get(fast.digest)!.labels };
      // a lower given as a copy of the layer forces the generic path
      const copy = join(base, 'copy');
      await mkdir(copy);
      await (await import('./helpers.js')).run('cp', ['-a', `${lower}/.`, copy]);
      const generic = await differ.compare([{ type: 'bind', source: copy, options: ['ro', 'rbind'] }], upperMounts, { mediaType });
      assert.equal(fast.digest, generic.digest);
      assert.equal(fast.mediaType, mediaType);
      const blob = content.blobs.get(fast.digest)!;
      assert.equal(blob.data.length, fast.size);
      assert.equal(labels['test.label'], 'x');
      assert.deepEqual(content.leases, ['L1']);
      const tar = await collect(decompress([blob.data], compressionOf(mediaType)!));
      const diffID = `sha256:${(await import('node:crypto')).createHash('sha256').update(tar).digest('hex')}`;
      if (mediaType === MEDIA_TYPE_LAYER) {
        assert.equal(fast.digest, diffID);
        assert.equal(fast.annotations, undefined);
      } else {
        assert.equal(fast.annotations?.[LABEL_UNCOMPRESSED], diffID);
        assert.equal(labels[LABEL_UNCOMPRESSED], diffID);
      }
      // the layer applies back to the merged view
      const target = join(base, 'target');
      await mkdir(target);
      await (await import('./helpers.js')).run('cp', ['-a', `${lower}/.`, target]);
      await new EmbeddedApplier(content, mounter).apply(fast, [{ type: 'bind', source: target, options: ['rw', 'rbind'] }]);
      const check = await mounter.mount(mounter.readonly(upperMounts));
      try {
        assert.deepEqual(await snapshotTree(target), await snapshotTree(check.target));
      } finally {
        await check.unmount();
      }
    });
  }
});
