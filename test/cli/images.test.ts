/** `buildcache import`, `export` and `images` end to end, in a child process, on the default (embedded) backend. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { notATar, threeLayers, writeArchive } from '../images/fixtures.js';
import { bin, collect, lines, run, tempDir, type Run } from './helpers.js';

const execFileP = promisify(execFile);
let dir: string;
let root: string;
let archive: string;
let layers: string[];
let id: string;

before(async () => {
  dir = await tempDir();
  root = join(dir, 'root');
  ({ layers } = await threeLayers(join(dir, 'layers')));
  archive = join(dir, 'three.tar');
  ({ id } = await writeArchive({ format: 'docker', out: archive, names: ['fixture/three:v1'], layers }));
});

const cli = (...args: string[]): Promise<Run> => run(['--root', root, ...args]);

test('import FILE prints what it loaded; images lists it (table and json)', async () => {
  const r = await cli('import', archive);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Loaded image: fixture/three:v1\n');
  const t = await cli('images');
  assert.equal(t.code, 0, t.stderr);
  const [header, row] = lines(t.stdout);
  assert.match(header!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+LAYERS\s+SIZE$/);
  assert.match(row!, new RegExp(`^fixture/three\\s+v1\\s+${id.slice(7, 19)}\\s+3\\s+\\S+`));
  const j = await cli('images', '--format', 'json');
  const list = JSON.parse(j.stdout) as { id: string; names: string[]; layers: number }[];
  assert.deepEqual(list.map((i) => [i.id, i.names, i.layers]), [[id, ['fixture/three:v1'], 3]]);
});

test('export NAME -o FILE writes an OCI layout, --format docker a docker save archive; - imports from stdin', async () => {
  for (const format of ['oci', 'docker']) {
    const file = join(dir, `out-${format}.tar`);
    const r = await cli('export', 'fixture/three:v1', '-o', file, '--format', format);
    assert.equal(r.code, 0, r.stderr);
    const out = join(dir, `out-${format}`);
    await mkdir(out);
    await execFileP('tar', ['-C', out, '-xf', file]);
    assert.ok((await readFile(join(out, 'blobs/sha256', (await sha(layers[0]!)).slice(7)))).equals(await readFile(layers[0]!)));
    await access(join(out, 'manifest.json')).then(() => assert.equal(format, 'docker'), () => assert.equal(format, 'oci'));
  }
  const child = spawn(process.execPath, [bin, '--root', root, 'import', '-']);
  createReadStream(join(dir, 'out-oci.tar')).pipe(child.stdin);
  const r = await collect(child);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Loaded image: fixture/three:v1\n');
});

test('bad input: one line on stderr, exit 1 (bad archive, unknown image) or 2 (usage); nothing changes', async () => {
  const bad = await cli('import', await notATar(dir));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^buildcache: \S+not-a-tar\.bin is not a readable tar archive .*\n$/);
  const missing = await cli('export', 'nope:1', '-o', join(dir, 'nope.tar'));
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'buildcache: no image "nope:1"; see buildcache images\n');
  await assert.rejects(access(join(dir, 'nope.tar')), 'no file is left behind');
  assert.equal((await cli('export', 'fixture/three:v1', '-o', join(dir, 'x.tar'), '--format', 'zip')).code, 2);
  assert.equal((await cli('import')).code, 2);
  assert.equal((await cli('images', 'extra')).code, 2);
  const list = JSON.parse((await cli('images', '--format', 'json')).stdout) as unknown[];
  assert.equal(list.length, 1);
});

async function sha(path: string): Promise<string> {
  const { stdout } = await execFileP('sha256sum', [path]);
  return `sha256:${stdout.split(' ')[0]}`;
}
