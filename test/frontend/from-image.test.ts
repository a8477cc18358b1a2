/**
 * `FROM NAME` of an image imported into the image store (`buildcache import`): the build starts from
 * the image's top layer and config, on real runc; a second build is all CACHED; an unknown name is a
 * typed error that says to import it. `buildcache build` finds what `buildcache import` loaded.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { openCache, type OpenCache } from '@buildcache/cache';
import { ErrNotFound } from '@buildcache/errdefs';
import { Frontend, createProgress } from '@buildcache/frontend';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import { writeArchive } from '../images/fixtures.js';
import { cli, countingRuntime, hostRootfs, readRecordFile } from './fixtures.js';

const run = promisify(execFile);
const silent = pino({ level: 'silent' });

let tmp: string;
let opened: OpenCache;
let layers: LayerStore;
let images: ImageStore;
let frontend: Frontend;
let runtime: Awaited<ReturnType<typeof countingRuntime>>;
let imageId: string;
let archive: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-from-image-'));
  const rootfs = join(tmp, 'rootfs');
  await hostRootfs(rootfs);
  await writeFile(join(rootfs, 'etc/image-marker'), 'from the imported image');
  await run('tar', ['-C', rootfs, '-cf', join(tmp, 'layer.tar'), '.']);
  archive = join(tmp, 'image.tar');
  ({ id: imageId } = await writeArchive({ format: 'oci', out: archive, names: ['fixture/shell:v1'], layers: [join(tmp, 'layer.tar')], env: ['GREETING=hello-from-image'] }));
  const root = join(tmp, 'cache');
  await mkdir(root, { recursive: true });
  runtime = await countingRuntime(tmp);
  opened = await openCache({ root, logger: silent });
  layers = await LayerStore.open({ cache: opened.cache, root: join(root, 'layers') });
  images = await ImageStore.open({ layers, root: join(root, 'layers', 'images') });
  await images.import(createReadStream(archive));
  frontend = await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), runtime: runtime.path, logger: silent, images });
});

after(async () => {
  await images?.close();
  await layers?.close();
  await opened?.close();
  await rm(tmp, { recursive: true, force: true });
});

/** A context holding `files`. */
async function project(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  for (const [path, body] of Object.entries(files)) await writeFile(join(dir, path), body);
  return dir;
}

const readImageFile = (record: string, path: string): Promise<string> => readRecordFile(opened.cache, record, path);

test('ImageStore.resolve gives the image ID, parsed config and top layer record', () => {
  const r = images.resolve('fixture/shell:v1');
  assert.equal(r.id, imageId);
  assert.equal(r.name, 'docker.io/fixture/shell:v1');
  assert.ok(r.config.config?.Env?.includes('GREETING=hello-from-image'));
  const meta = layers.list().find((m) => m.chainID === r.topLayer?.chainID);
  assert.equal(r.topLayer?.recordId, meta?.recordId);
  assert.throws(() => images.resolve('fixture/none:v1'), ErrNotFound);
});

test('FROM an imported image: RUN sees its files and ENV, COPY adds to it; a second build is all CACHED with no runc run', async () => {
  const ctx = await project('p1', {
    Dockerfile: 'FROM fixture/shell:v1\nRUN echo "$GREETING: $(cat /etc/image-marker)" > /out.txt\nCOPY hello.txt /hello.txt\n',
    'hello.txt': 'hi\n',
  });
  const first = await frontend.build({ context: ctx, progress: createProgress('quiet', process.stderr) });
  assert.deepEqual(first.steps.map((s) => s.cached), [false, false]);
  assert.equal(await runtime.runs(), 1);
  assert.equal(await readImageFile(first.record!, 'out.txt'), 'hello-from-image: from the imported image\n');
  assert.equal(await readImageFile(first.record!, 'hello.txt'), 'hi\n');
  assert.equal(await readImageFile(first.record!, 'etc/image-marker'), 'from the imported image');
  const config = JSON.parse(first.image.configBytes.toString('utf8')) as { config: { Env: string[]; Cmd: string[] } };
  assert.ok(config.config.Env.includes('GREETING=hello-from-image'));
  assert.deepEqual(config.config.Cmd, ['/bin/sh']);
  assert.equal(first.image.layers.length, 3, "the image's layer and one per step");

  const second = await frontend.build({ context: ctx, progress: createProgress('quiet', process.stderr) });
  assert.deepEqual(second.steps.map((s) => s.cached), [true, true]);
  assert.equal(second.executed, 0);
  assert.equal(await runtime.runs(), 1, 'no runc run on the cached build');
  assert.equal(second.digest, first.digest);
});

test('FROM an unknown name is ErrNotFound saying to import it, and runs nothing', async () => {
  const ctx = await project('p2', { Dockerfile: 'FROM fixture/none:v1\nRUN true\n' });
  const before = await runtime.runs();
  await assert.rejects(frontend.build({ context: ctx, progress: createProgress('quiet', process.stderr) }), (err: Error) => {
    assert.ok(err instanceof ErrNotFound, String(err));
    assert.match(err.message, /fixture\/none:v1.*buildcache import/);
    return true;
  });
  assert.equal(await runtime.runs(), before);
});

test('buildcache build FROM an image buildcache import loaded into the same root', async () => {
  const root = join(tmp, 'root-cli');
  const imported = await cli(['--root', root, 'import', archive]);
  assert.equal(imported.code, 0, imported.stderr);
  const ctx = await project('p3', { Dockerfile: 'FROM fixture/shell:v1\nRUN echo "run says $GREETING"\n' });
  const first = await cli(['--root', root, 'build', '--progress', 'plain', ctx], { BUILDCACHE_RUNC: runtime.path });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /run says hello-from-image/);
  const second = await cli(['--root', root, 'build', '--progress', 'plain', ctx], { BUILDCACHE_RUNC: runtime.path });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout, first.stdout);
  assert.match(second.stderr, /RUN echo "run says \$GREETING"\n#\d+ CACHED\n/);
});
