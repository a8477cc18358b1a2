/**
 * The image store on every backend: a three-layer image (gzip and plain layers, a whiteout and an
 * opaque directory on top) imported from a `docker save` archive and from an OCI layout, listed,
 * exported with the original layer tars; bad archives refused with a typed error before anything is
 * registered; and an import killed at each of its steps leaves no half-recorded image and no
 * layer reference behind.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  ErrDiffIDMismatch, ErrLayerCycle, ErrMissingBlob, ErrNotAnImageArchive, ErrNotFound, type BuildcacheError,
} from '@buildcache/errdefs';
import { BACKENDS, type BackendKind, type TestBackend } from '../support/backends.js';
import { notATar, threeLayers, writeArchive, type Breakage } from './fixtures.js';
import { Stack } from './helpers.js';

const run = promisify(execFile);
const worker = join(dirname(fileURLToPath(import.meta.url)), 'import-worker.js');
const addWorker = join(dirname(fileURLToPath(import.meta.url)), 'add-worker.js');

const BAD: { name: string; format: 'docker' | 'oci'; brk: Breakage; error: new (...a: never[]) => BuildcacheError; says: RegExp }[] = [
  { name: 'an OCI layout missing a layer blob', format: 'oci', brk: { dropLayer: 1 }, error: ErrMissingBlob, says: /layer 2 of manifest sha256:[0-9a-f]{64} sha256:[0-9a-f]{64} is not in the archive/ },
  { name: 'a docker archive missing a layer file', format: 'docker', brk: { dropLayer: 2 }, error: ErrMissingBlob, says: /layer [0-9a-f]{64}\/layer\.tar named by manifest\.json is not in the archive/ },
  { name: 'a docker manifest naming a layer that is not there', format: 'docker', brk: { extraLayer: true }, error: ErrMissingBlob, says: /deadbeef/ },
  { name: 'a config whose diff_id does not match its layer (OCI)', format: 'oci', brk: { wrongDiffID: 2 }, error: ErrDiffIDMismatch, says: /uncompresses to sha256:[0-9a-f]{64}, but the config's diff_id/ },
  { name: 'a config whose diff_id does not match its layer (docker)', format: 'docker', brk: { wrongDiffID: 1 }, error: ErrDiffIDMismatch, says: /diff_id/ },
  { name: 'a docker archive whose legacy parent links loop', format: 'docker', brk: { parentCycle: true }, error: ErrLayerCycle, says: /loop back/ },
  { name: 'a docker manifest listing one layer twice', format: 'docker', brk: { repeatLayer: true }, error: ErrLayerCycle, says: /twice/ },
];

let fx: string;
let three: { layers: string[]; expected: Record<string, string> };
let docker: string;
let oci: string;
let ids: { id: string; diffIDs: string[] };

before(async () => {
  fx = await mkdtemp(join(tmpdir(), 'images-fixtures-'));
  three = await threeLayers(join(fx, 'layers'));
  docker = join(fx, 'three-docker.tar');
  oci = join(fx, 'three-oci.tar');
  ids = await writeArchive({ format: 'docker', out: docker, names: ['fixture/three:v1'], layers: three.layers });
  const o = await writeArchive({ format: 'oci', out: oci, names: ['example.com/three:oci'], layers: three.layers });
  assert.equal(o.id, ids.id, 'both archives hold the same config');
  for (const [i, bad] of BAD.entries()) {
    await writeArchive({ format: bad.format, out: join(fx, `bad-${i}.tar`), names: ['bad:1'], layers: three.layers, break: bad.brk });
  }
});
after(async () => {
  await rm(fx, { recursive: true, force: true });
});

/** The files (path → content) under `dir`. */
async function files(dir: string, at = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(join(dir, at), { withFileTypes: true })) {
    const rel = at ? `${at}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, await files(dir, rel));
    else out[rel] = await readFile(join(dir, rel), 'utf8');
  }
  return out;
}

/** The uncompressed bytes of a layer file of the fixture. */
async function plainTar(path: string): Promise<Buffer> {
  return path.endsWith('.gz') ? (await run('gzip', ['-dc', path], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout : readFile(path);
}


for (const kind of BACKENDS) {
  describe(`image store on ${kind.name}`, () => {
    let tb: TestBackend;
    let s: Stack;
    before(async () => {
      tb = await kind.open();
      s = await Stack.open(tb.backend, tb.dir);
    });
    after(async () => {
      await s.close();
      await tb.close();
    });

    test('a three-layer docker save archive: layers in diff_ids order, whiteouts applied, listed by name', async () => {
      const [img] = await s.images.import(createReadStream(docker), { what: docker });
      assert.equal(img!.id, ids.id);
      assert.deepEqual(img!.names, ['fixture/three:v1']);
      assert.equal(img!.layers, 3);
      const layers = s.layers.list();
      assert.deepEqual(layers.map((l) => l.diffID).sort(), [...ids.diffIDs].sort(), 'one layer per diff_id');
      const top = layers.find((l) => l.depth === 3)!;
      assert.equal(top.diffID, ids.diffIDs[2], 'the top of the chain is the last diff_id');
      assert.deepEqual(await s.withLayerMounted(top.chainID, (d) => files(d)), three.expected, 'etc/gone and opt/old-* are gone');
      const sizes = await Promise.all(three.layers.map(async (p) => (await plainTar(p)).length));
      assert.deepEqual(s.images.list(), [{ id: ids.id, names: ['fixture/three:v1'], layers: 3, size: sizes.reduce((a, b) => a + b), created: '2024-01-02T03:04:05Z' }]);
    });

    test('the same image from an OCI layout adds its name and no layer; exports hold the original layer tars', async () => {
      const layersBefore = s.layers.list();
      const [img] = await s.images.import(createReadStream(oci));
      assert.equal(img!.id, ids.id);
      assert.deepEqual([...img!.names].sort(), ['example.com/three:oci', 'fixture/three:v1']);
      assert.deepEqual(s.layers.list(), layersBefore, 'no layer registered or referenced again');
      for (const format of ['oci', 'docker'] as const) {
        const out = join(tb.dir, `export-${format}`);
        await mkdir(out);
        await pipeline(Readable.from(s.images.export('fixture/three:v1', format)), createWriteStream(`${out}.tar`));
        await run('tar', ['-C', out, '-xf', `${out}.tar`]);
        for (const [i, p] of three.layers.entries()) {
          assert.ok((await readFile(join(out, 'blobs/sha256', ids.diffIDs[i]!.slice(7)))).equals(await plainTar(p)), `layer ${i + 1} is the original tar`);
        }
        const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
        assert.deepEqual(index.manifests.map((m) => m.annotations['io.containerd.image.name']).sort(), ['docker.io/fixture/three:v1', 'example.com/three:oci']);
        await access(join(out, 'manifest.json')).then(
          () => assert.equal(format, 'docker', 'only docker archives have manifest.json'),
          () => assert.equal(format, 'oci'),
        );
        // what was exported imports again as the same image
        const [again] = await s.images.import(createReadStream(`${out}.tar`));
        assert.equal(again!.id, ids.id);
      }
    });

    test('a docker save archive with a repeated layer stored as a symlink (as docker writes it): three layers, two tars', async () => {
      const path = join(tb.dir, 'repeat.tar');
      const r = await writeArchive({ format: 'docker', out: path, names: ['fixture/repeat:v1'], layers: [three.layers[0]!, three.layers[2]!, three.layers[0]!] });
      const before = s.layers.list().length;
      const [img] = await s.images.import(createReadStream(path));
      assert.equal(img!.id, r.id);
      assert.equal(img!.layers, 3);
      assert.equal(s.layers.list().length, before + 2, 'the bottom layer is fixture/three\'s; two new chain IDs');
      await s.images.remove(r.id);
      assert.equal(s.layers.list().length, before);
    });

    test('remove gives the layers back; an unknown name is ErrNotFound', async () => {
      assert.throws(() => s.images.get('fixture/none'), ErrNotFound);
      await s.images.remove(ids.id.slice(7, 19));
      assert.deepEqual(s.images.list(), []);
      assert.deepEqual(s.layers.list(), []);
      assert.equal(await s.records(), 0);
    });

    for (const bad of BAD) {
      test(`${bad.name}: ${bad.error.name} before anything is registered`, async () => {
        await assert.rejects(s.images.import(createReadStream(join(fx, `bad-${BAD.indexOf(bad)}.tar`))), (err: BuildcacheError) => {
          assert.ok(err instanceof bad.error, `${err.name}: ${err.message}`);
          assert.match(err.message, bad.says);
          return true;
        });
        assert.deepEqual(s.layers.list(), [], 'no layer registered');
        assert.equal(await s.records(), 0, 'no cache record left');
        assert.deepEqual(s.images.list(), []);
        assert.deepEqual(await readdir(join(tb.dir, 'layers', 'images', 'tmp')), [], 'the spooled archive is gone');
      });
    }

    test('a file that is not a tar, and a tar that is no image: ErrNotAnImageArchive', async () => {
      await assert.rejects(s.images.import(createReadStream(await notATar(tb.dir)), { what: 'not-a-tar.bin' }), (err: BuildcacheError) => {
        assert.ok(err instanceof ErrNotAnImageArchive, String(err));
        assert.match(err.message, /not-a-tar\.bin is not a readable tar archive/);
        return true;
      });
      await assert.rejects(s.images.import(createReadStream(three.layers[0]!)), ErrNotAnImageArchive);
      assert.deepEqual(s.layers.list(), []);
      assert.equal(await s.records(), 0);
    });

    test('add of an image without layers: recorded once, a second add only gives it its names, no journal left', async () => {
      const config = { architecture: 'amd64', os: 'linux', config: { Env: ['EMPTY=1'] } };
      const a = await s.images.add(undefined, config, ['empty:a']);
      const b = await s.images.add(undefined, config, ['empty:b']);
      assert.equal(b.id, a.id);
      assert.deepEqual([...b.names].sort(), ['empty:a', 'empty:b']);
      assert.deepEqual(await readdir(join(tb.dir, 'layers', 'images', 'pending')), [], 'no journal left');
      await s.images.remove(a.id);
      assert.deepEqual(s.images.list(), []);
    });
  });
}

/** Runs the import (or another) worker; resolves with its output, or with null when it was killed. */
function runWorker(cfg: object, script = worker): Promise<string | null> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [script, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('close', (code, signal) => (signal === 'SIGKILL' ? res(null) : code === 0 ? res(out) : rej(new Error(`worker failed (${code}): ${err}`))));
  });
}

/**
 * Runs a worker (`run`, given its config) once to the end, expecting `events` progress events, then
 * once killed at each event: after each kill, `check` looks at the reopened stack (`last`: killed
 * at the last event), and no journal may be left.
 */
async function killedAtEachEvent(
  kind: BackendKind, name: string, events: number, what: string,
  run: (cfg: { spec: TestBackend['spec']; dir: string; killAt?: number }) => Promise<string | null>,
  check: (s: Stack, k: number, last: boolean) => Promise<void>,
): Promise<void> {
  const tb = await kind.open();
  await tb.backend.close();
  try {
    const dry = (await run({ spec: tb.spec, dir: join(tb.dir, `${name}-dry`) }))!;
    assert.equal(Number(/^events (\d+)$/m.exec(dry)?.[1]), events, what);
    for (let k = 0; k < events; k++) {
      const dir = join(tb.dir, `${name}-kill-${k}`);
      assert.equal(await run({ spec: tb.spec, dir, killAt: k }), null, `killed at ${k}`);
      const backend = await tb.reopen();
      const s = await Stack.open(backend, dir);
      try {
        await check(s, k, k === events - 1);
        assert.deepEqual(await readdir(join(dir, 'layers', 'images', 'pending')), [], 'no journal left');
      } finally {
        await s.close();
        await backend.close();
      }
    }
    await tb.reopen();
  } finally {
    await tb.close();
  }
}

for (const kind of BACKENDS.filter((k) => k.name.endsWith('overlayfs'))) {
  test(`add (a build's record chain as an image) killed at each step on ${kind.name}: no half-recorded image, no layer reference kept, the records stay the cache's`, async () => {
    await killedAtEachEvent(kind, 'add', 3, 'two layers and the record', (cfg) => runWorker(cfg, addWorker), async (s, k, last) => {
      if (!last) {
        assert.deepEqual(s.images.list(), [], `killed at ${k}: no image`);
        assert.deepEqual(s.layers.list(), [], `killed at ${k}: the layers it registered are given back`);
      } else {
        // as an import killed there: the image is recorded, its names were not given yet
        const [img, ...more] = s.images.list();
        assert.ok(img && more.length === 0 && img.layers === 2, 'killed after the record: the image is there');
        assert.deepEqual(s.layers.list().map((l) => l.refs).sort(), [0, 1], 'one reference, on the top layer');
        await s.images.remove(img.id);
        assert.deepEqual(s.layers.list(), []);
      }
      assert.equal(await s.records(), 2, 'the build records stay the cache\'s');
    });
  });

  test(`an import killed at each step on ${kind.name}: no half-recorded image, its layers given back`, async () => {
    await killedAtEachEvent(kind, 'import', 4, 'three layers and the record', (cfg) => runWorker({ ...cfg, archive: docker }), async (s, k, last) => {
      if (!last) {
        assert.deepEqual(s.images.list(), [], `killed at ${k}: no image`);
        assert.deepEqual(s.layers.list(), [], `killed at ${k}: the layers it registered are released`);
        assert.equal(await s.records(), 0, `killed at ${k}: no cache record left`);
      } else {
        assert.deepEqual(s.images.list().map((i) => i.id), [ids.id], 'killed after the record: the image is there');
        assert.deepEqual(s.layers.list().map((l) => l.refs).sort(), [0, 0, 1], 'one reference, on the top layer');
        await s.images.remove(ids.id);
        assert.deepEqual(s.layers.list(), []);
      }
    });
  });
}
