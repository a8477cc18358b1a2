/**
 * Real data: a Debian minbase rootfs layer (debootstrap; a system tree when the mirror is unreachable,
 * logged) imported from an OCI layout (gzip layer) and from a `docker save` archive (plain layer),
 * exported in both formats with the original layer tar; the docker save export loaded by containerd
 * (`ctr images import` on the run's private containerd) unpacks to the original files. And the OCI
 * export of a three-layer image with a whiteout, loaded by containerd, shows the upper layers' changes.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { containerdAddress } from '../harness/containerd.js';
import { BACKENDS, type TestBackend } from '../support/backends.js';
import { cachedArchive, cachedJSON, realLayer, threeLayers, writeArchive, type RealLayer } from './fixtures.js';
import { Stack, treeOf } from './helpers.js';

const run = promisify(execFile);
const NAME = 'debian-fixture:bookworm';
const THREE = 'three-fixture:v1';

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

describe('a real Debian rootfs image', () => {
  const log: string[] = [];
  const ns = `bcimages-${randomBytes(4).toString('hex')}`;
  const ctr = (...args: string[]): Promise<{ stdout: string }> => run('ctr', ['-a', containerdAddress(), '-n', ns, ...args], { maxBuffer: 16 << 20 });
  let layer: RealLayer;
  let tree: Record<string, unknown>;
  let work: string;
  let tb: TestBackend;
  let s: Stack;
  let id: string;
  let diffID: string;
  let ociArchive: string;
  let dockerArchive: string;

  before(async () => {
    layer = await realLayer((line) => log.push(line));
    work = await mkdtemp(join(tmpdir(), 'images-real-'));
    // made once per layer source and kept beside the layer, so that reruns are fast
    const oci = await cachedArchive(`${layer.source}-oci.tar`, { format: 'oci', names: [`docker.io/library/${NAME}`], layers: [layer.tarGz] });
    ociArchive = oci.path;
    id = oci.id;
    diffID = oci.diffIDs[0]!;
    dockerArchive = (await cachedArchive(`${layer.source}-docker.tar`, { format: 'docker', names: [NAME], layers: [layer.tar] })).path;
    tree = await cachedJSON(`${layer.source}-tree.json`, () => treeOf(layer.tree, layer.exclude));
    tb = await BACKENDS[0]!.open();
    s = await Stack.open(tb.backend, tb.dir);
  });
  after(async () => {
    await s?.close();
    await tb?.close();
    await rm(work, { recursive: true, force: true });
  });

  /** Loads `archive` into containerd and returns the unpacked image's tree. */
  async function containerdTree(archive: string, name = NAME): Promise<Record<string, unknown>> {
    await ctr('images', 'import', archive);
    const target = join(work, `mnt-${randomBytes(3).toString('hex')}`);
    await mkdir(target);
    await ctr('images', 'mount', `docker.io/library/${name}`, target);
    try {
      return await treeOf(target, layer.exclude);
    } finally {
      await ctr('images', 'unmount', '--rm', target);
      await ctr('images', 'rm', '--sync', `docker.io/library/${name}`);
    }
  }

  test('from an OCI layout (gzip layer): registered once; its docker save export loads in containerd with the same files', async (t) => {
    for (const line of log) t.diagnostic(line);
    t.diagnostic(`layer: ${(await stat(layer.tar)).size} bytes tar, ${(await stat(layer.tarGz)).size} bytes gzip`);
    const [img] = await s.images.import(createReadStream(ociArchive));
    assert.deepEqual({ id: img!.id, names: img!.names, layers: img!.layers, size: img!.size }, { id, names: [NAME], layers: 1, size: (await stat(layer.tar)).size });
    const out = join(work, 'export-docker.tar');
    await pipeline(Readable.from(s.images.export(NAME, 'docker')), createWriteStream(out));
    assert.deepEqual(await containerdTree(out), tree, 'containerd unpacks the original rootfs');
  });

  test('from a docker save archive: the same image, no new layer; its OCI export holds the original tar', async () => {
    const before = s.layers.list();
    const [img] = await s.images.import(createReadStream(dockerArchive));
    assert.equal(img!.id, id);
    assert.deepEqual(s.layers.list(), before);
    const out = join(work, 'export-oci.tar');
    await pipeline(Readable.from(s.images.export(NAME, 'oci')), createWriteStream(out));
    const blobs = join(work, 'export-oci');
    await mkdir(blobs);
    await run('tar', ['-C', blobs, '-xf', out, `blobs/sha256/${diffID.slice(7)}`]);
    const blob = join(blobs, 'blobs/sha256', diffID.slice(7));
    assert.equal((await stat(blob)).size, (await stat(layer.tar)).size);
    assert.equal(await sha256(blob), await sha256(layer.tar), 'the layer blob is the original tar, byte for byte');
  });

  test('a three-layer image: its OCI export loads in containerd, whiteouts and opaque directory applied', async () => {
    const fx = join(work, 'three');
    const three = await threeLayers(fx);
    await writeArchive({ format: 'docker', out: join(fx, 'three.tar'), names: [THREE], layers: three.layers });
    await s.images.import(createReadStream(join(fx, 'three.tar')));
    const out = join(work, 'three-oci.tar');
    await pipeline(Readable.from(s.images.export(THREE)), createWriteStream(out));
    const files = Object.entries(await containerdTree(out, THREE)).filter(([, e]) => (e as number[])[0] === 0o100000).map(([p]) => p).sort();
    assert.deepEqual(files, Object.keys(three.expected).map((p) => `./${p}`).sort());
  });
});
