/** `buildcache push`, `cat` and `pull` against a real registry, through the binary. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRegistry, type TestRegistry } from '../support/registry.js';

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

  test('usage errors name what is missing', async () => {
    const r = await cli(['cat', 'only-ref']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cat: missing PATH/);
    const c = await cli(['push', 'x', 'y', '--compression', 'lz4']);
    assert.equal(c.code, 2);
  });
});
