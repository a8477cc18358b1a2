/** `buildcache push`, `cat` and `pull` against a real registry, through the binary. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegistryClient } from '@buildcache/registry';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { threeLayers, writeArchive } from '../images/fixtures.js';

const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [bin, ...args], (err, stdout, stderr) => {
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let registry: TestRegistry;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-cli-'));
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('buildcache push, cat, pull', () => {
  test('push a record chain as eStargz; cat one file; pull lazily, then fully', async () => {
    const root = join(dir, 'a');
    const demo = await cli(['--root', root, 'demo']);
    assert.equal(demo.code, 0, demo.stderr);
    const app = /^ {2}app +(\S+)$/m.exec(demo.stdout)![1]!;
    const ref = `${registry.host}/cli/demo:v1`;
    const push = await cli(['--root', root, 'push', app, ref, '--compression', 'estargz']);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stdout, new RegExp(`^pushed ${ref}@sha256:[0-9a-f]{64}$`, 'm'));

    const cat = await cli(['--root', join(dir, 'b'), 'cat', ref, 'etc/motd']);
    assert.equal(cat.code, 0, cat.stderr);
    assert.match(cat.stdout, /^app /);
    const gone = await cli(['--root', join(dir, 'b'), 'cat', ref, 'usr/share/doc/README']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /usr\/share\/doc\/README is not in image/);

    const lazy = await cli(['--root', join(dir, 'c'), 'pull', '--lazy', ref]);
    assert.equal(lazy.code, 0, lazy.stderr);
    const rows = lazy.stdout.trim().split('\n');
    assert.equal(rows.length, 3);
    assert.ok(rows.slice(0, 2).every((r) => r.split('\t')[2] === 'estargz' && !r.endsWith('extracted')));
    const full = await cli(['--root', join(dir, 'c'), 'pull', ref]);
    assert.equal(full.code, 0, full.stderr);
    for (const row of full.stdout.trim().split('\n').slice(0, 2)) {
      const [, , , bytes] = row.split('\t');
      const [fetched, size] = bytes!.split('/');
      assert.equal(fetched, size, row);
    }
    assert.match(full.stdout.trim().split('\n')[1]!, /\textracted$/);
  });

  test('push NAME: an imported image goes out with its config; cat reads its layers, whiteouts applied', async () => {
    const root = join(dir, 'img');
    const { layers } = await threeLayers(join(dir, 'img-layers'));
    const archive = join(dir, 'three.tar');
    await writeArchive({ format: 'docker', out: archive, names: ['fixture/three:v1'], layers, env: ['GREETING=pushed'] });
    const imported = await cli(['--root', root, 'import', archive]);
    assert.equal(imported.code, 0, imported.stderr);
    const ref = `${registry.host}/cli/three:v1`;
    const push = await cli(['--root', root, 'push', 'fixture/three:v1', ref]);
    assert.equal(push.code, 0, push.stderr);
    assert.equal(push.stdout.trim().split('\n').length, 4, 'three layers, then the manifest');

    const client = new RegistryClient();
    try {
      const image = await client.resolve(ref);
      const config = JSON.parse((await client.readBlob(ref, image.manifest.config)).toString()) as { config: { Env: string[] }; rootfs: { diff_ids: string[] } };
      assert.ok(config.config.Env.includes('GREETING=pushed'), JSON.stringify(config.config.Env));
      assert.equal(config.rootfs.diff_ids.length, 3);
    } finally {
      await client.close();
    }
    const cat = await cli(['--root', join(dir, 'img-b'), 'cat', ref, 'etc/os-release']);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, 'ID=fixture\nVERSION=2\n');
    const gone = await cli(['--root', join(dir, 'img-b'), 'cat', ref, 'etc/gone']);
    assert.equal(gone.code, 1, 'the top layer whites it out');
    const unknown = await cli(['--root', root, 'push', 'fixture/none:v1', ref]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /fixture\/none:v1/);
  });

  test('usage errors name what is missing', async () => {
    const r = await cli(['cat', 'only-ref']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cat: missing PATH/);
    const c = await cli(['push', 'x', 'y', '--compression', 'lz4']);
    assert.equal(c.code, 2);
  });
});
