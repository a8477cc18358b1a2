/**
 * `buildcache build --cache-to/--cache-from` as a user runs it: machine B (its own --root) rebuilds
 * machine A's project from A's exported OCI layout with every step CACHED and the same digest; a
 * malformed spec is a usage error (exit 2) before anything is built.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, hostRootfs } from '../frontend/fixtures.js';

let tmp: string;
let ctx: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-remotecache-cli-'));
  ctx = join(tmp, 'ctx');
  await hostRootfs(join(ctx, 'rootfs'));
  await mkdir(join(ctx, 'src'));
  await writeFile(join(ctx, 'src/a.txt'), 'hello\n');
  await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nCOPY src/ /src/\nRUN cat /src/a.txt > /out.txt\n');
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('build --cache-to type=local on A, --cache-from type=local on B: every step CACHED, same digest', async () => {
  const layout = join(tmp, 'layout');
  const a = await cli(['--root', join(tmp, 'a'), 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctx]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /exporting cache to local /);
  const ctxB = join(tmp, 'ctx-b');
  await cp(ctx, ctxB, { recursive: true });
  const b = await cli(['--root', join(tmp, 'b'), 'build', '--progress', 'plain', '--cache-from', `type=local,src=${layout}`, ctxB]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stderr, /importing cache manifest from local /);
  assert.equal((b.stderr.match(/CACHED/g) ?? []).length, 3, b.stderr);
  assert.equal(b.stdout, a.stdout, 'same image digest');
});

test('a malformed --cache-to or --cache-from is a usage error, exit 2, naming the flag', async () => {
  for (const [flag, value, why] of [
    ['--cache-to', 'type=s3,bucket=x', /type must be registry or local/],
    ['--cache-to', 'type=local', /needs dest=/],
    ['--cache-from', 'type=local,dest=/x', /needs src=/],
    ['--cache-to', 'type=registry,ref=r,mode=maximal', /mode must be min or max/],
    ['--cache-from', 'type=registry,ref=', /has an empty value/],
  ] as const) {
    const r = await cli(['--root', join(tmp, 'c'), 'build', flag, value, ctx]);
    assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.match(r.stderr, new RegExp(flag));
  }
});
