/**
 * `buildcache build` as a process: docker-style plain progress (and the tty view), the image
 * digest on stdout, an exported OCI archive that the harness's containerd imports and runs with
 * `ctr run`, and a `kill -9` during a RUN after which the next build is correct and nothing leaks
 * (no runc container, no mount, no lease that no record owns).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { mountPointsUnder } from '@buildcache/snapshot';
import { containerdAddress } from '../harness/containerd.js';
import { cli, countingRuntime, hostRootfs, spawnCli } from './fixtures.js';

const run = promisify(execFile);

let tmp: string;
let rootfs: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-frontend-cli-'));
  rootfs = join(tmp, 'rootfs');
  await hostRootfs(rootfs);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function project(name: string, dockerfile: string, files: Record<string, string> = {}): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  await cp(rootfs, join(dir, 'rootfs'), { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  for (const [path, body] of Object.entries(files)) await writeFile(join(dir, path), body);
  return dir;
}

describe('buildcache build', () => {
  test('plain progress: one block per step, RUN output streamed, CACHED on the rebuild; the digest on stdout', async () => {
    const ctx = await project('plain', 'FROM scratch\nCOPY rootfs/ /\nRUN echo hello-from-run\n');
    const root = join(tmp, 'root-plain');
    const first = await cli(['--root', root, 'build', '--progress', 'plain', ctx]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.match(first.stderr, /^#2 \[1\/2\] COPY rootfs\/ \/\n#2 DONE \d+\.\ds\n\n/m);
    assert.match(first.stderr, /^#3 \[2\/2\] RUN echo hello-from-run\n#3 \d+\.\d{3} hello-from-run\n#3 DONE \d+\.\ds\n/m);
    // auto on a pipe is plain
    const second = await cli(['--root', root, 'build', ctx]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, first.stdout);
    assert.match(second.stderr, /^#2 \[1\/2\] COPY rootfs\/ \/\n#2 CACHED\n/m);
    assert.match(second.stderr, /^#3 \[2\/2\] RUN echo hello-from-run\n#3 CACHED\n/m);
    const tty = await cli(['--root', root, 'build', '--progress', 'tty', ctx]);
    assert.equal(tty.code, 0, tty.stderr);
    assert.match(tty.stderr, /\[\+\] Building \d+\.\ds \(\d+\/\d+\)/);
    assert.match(tty.stderr, / => CACHED \[2\/2\] RUN echo hello-from-run/);
    assert.match(tty.stderr.replaceAll('\u001b', '<ESC>'), /<ESC>\[\d+A/, 'redrawn in place (cursor up)');
  });

  test('usage errors and a failing RUN: exit codes and one clear message', async () => {
    const root = join(tmp, 'root-errors');
    const noCtx = await cli(['--root', root, 'build']);
    assert.equal(noCtx.code, 2);
    assert.match(noCtx.stderr, /build: missing CONTEXT/);
    const ctx = await project('errors', 'FROM scratch\nCOPY rootfs/ /\nRUN echo about to fail; exit 7\n');
    const badProgress = await cli(['--root', root, 'build', '--progress', 'fancy', ctx]);
    assert.equal(badProgress.code, 2);
    const failed = await cli(['--root', root, 'build', ctx]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /buildcache: Dockerfile:3: process "echo about to fail; exit 7" did not complete successfully: exit code: 7\nabout to fail\n/);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nEXPOSE 80\n');
    const unsupported = await cli(['--root', root, 'build', '-f', join(ctx, 'Dockerfile'), ctx]);
    assert.equal(unsupported.code, 1);
    assert.match(unsupported.stderr, /buildcache: Dockerfile:2: unsupported instruction EXPOSE/);
  });

  test('the exported OCI archive imports into containerd and runs with ctr run', async () => {
    const ctx = await project('ctr', 'FROM scratch\nCOPY rootfs/ /\nWORKDIR /srv\nRUN echo built-by-buildcache > msg\nENTRYPOINT ["/bin/cat"]\nCMD ["/srv/msg"]\n');
    const root = join(tmp, 'root-ctr');
    const archive = join(tmp, 'image.tar');
    const name = `docker.io/library/bc-ctr-${randomBytes(4).toString('hex')}:latest`;
    const built = await cli(['--root', root, 'build', '-t', name, '-o', archive, ctx]);
    assert.equal(built.code, 0, built.stderr);
    const ns = `bctest-${randomBytes(5).toString('hex')}`;
    const ctr = (...args: string[]): Promise<{ stdout: string }> => run('ctr', ['-a', containerdAddress(), '-n', ns, ...args]);
    const id = `buildcache-ctr-${randomBytes(4).toString('hex')}`;
    try {
      await ctr('images', 'import', archive);
      const listed = (await ctr('images', 'ls', '-q')).stdout;
      assert.ok(listed.split('\n').includes(name), listed);
      const out = await ctr('run', '--rm', '--runc-root', join(tmp, 'ctr-runc'), name, id);
      assert.equal(out.stdout, 'built-by-buildcache\n');
    } finally {
      await ctr('containers', 'rm', id).catch(() => undefined);
      await ctr('images', 'rm', name).catch(() => undefined);
    }
  });

  test('kill -9 during a RUN: the next build reruns it correctly and nothing leaks', async () => {
    const ctx = await project('kill', 'FROM scratch\nCOPY rootfs/ /\nRUN echo started; sleep 2; echo finished > /f\nRUN cat /f\n');
    const root = join(tmp, 'root-kill');
    await mkdir(join(tmp, 'kill-runtime'));
    const runtime = await countingRuntime(join(tmp, 'kill-runtime'));
    const env = { BUILDCACHE_RUNC: runtime.path };
    const child = spawnCli(['--root', root, 'build', '--progress', 'plain', ctx], env);
    let stderr = '';
    await new Promise<void>((res, rej) => {
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (/ started\n/.test(stderr)) res();
      });
      child.on('close', () => rej(new Error(`build ended before its RUN started: ${stderr}`)));
    });
    child.kill('SIGKILL');
    await new Promise((res) => child.on('close', res));
    const state = join(root, 'frontend', 'runc');
    const next = await cli(['--root', root, 'build', '--progress', 'plain', ctx], env);
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stderr, /\[2\/3\] RUN echo started; sleep 2; echo finished > \/f\n(#\d+ [\d.]+ started\n)#\d+ DONE/);
    assert.match(next.stderr, /\[3\/3\] RUN cat \/f\n#\d+ [\d.]+ finished\n/);
    assert.equal(await runtime.runs(), 3, 'the killed RUN, its rerun, and the last RUN');
    assert.deepEqual((await readdir(state)).filter((n) => n.startsWith('buildcache-')), []);
    assert.equal((await run('runc', ['--root', state, 'list', '-q'])).stdout.trim(), '');
    assert.deepEqual(await mountPointsUnder(root), []);
    const { cache, backend, close } = await openCache({ root, logger: pino({ level: 'silent' }) });
    try {
      const records = new Set<string>();
      for await (const u of cache.diskUsage()) {
        assert.equal(u.mutable, false, `record ${u.id} is a mutable left by the killed step`);
        records.add(u.id);
      }
      for (const lease of await backend.leases.list()) {
        assert.ok(records.has(lease.id.replace(/-(view|variants)$/, '')), `lease ${lease.id} belongs to no record`);
      }
    } finally {
      await close();
    }
  });
});
