/** The layer store's metadata files: concurrent writers of one `layer.json` or `mount.json` each land whole. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeMeta, writeMountMeta, type LayerMeta, type MountMeta } from '../src/meta.js';

describe('layer metadata files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bc-layers-meta-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('concurrent writers of one layer.json and one mount.json all succeed; each file is one writer\'s, whole', async () => {
    const layers: LayerMeta[] = Array.from({ length: 16 }, (_, i) => ({
      chainID: 'sha256:aa', diffID: 'sha256:aa', depth: 1, size: i, recordId: `record-${i}`.repeat(500), tarSplit: true, refs: i,
    }));
    const mounts: MountMeta[] = Array.from({ length: 16 }, (_, i) => ({ name: 'm', mountID: `mount-${i}`.repeat(500), token: `${i}` }));
    await Promise.all([...layers.map((m) => writeMeta(dir, m)), ...mounts.map((m) => writeMountMeta(dir, m))]);
    const layer = JSON.parse(await readFile(join(dir, 'layer.json'), 'utf8')) as LayerMeta;
    assert.ok(layers.some((m) => m.recordId === layer.recordId && m.refs === layer.refs));
    const mount = JSON.parse(await readFile(join(dir, 'mount.json'), 'utf8')) as MountMeta;
    assert.ok(mounts.some((m) => m.mountID === mount.mountID && m.token === mount.token));
    assert.deepEqual((await readdir(dir)).sort(), ['layer.json', 'mount.json']);
  });
});
