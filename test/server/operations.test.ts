/**
 * The CLI's operations through the daemon: a build whose context is streamed from the client
 * (.dockerignore applied there) with progress and the --output archive streamed back; import,
 * images and export of that archive; bad streams (a context that stops mid-way, a malformed
 * archive) give typed errors, leave no scratch directory and the daemon keeps serving; and a build
 * blocked in a runc RUN while du and prune run from other clients.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, credentials, Metadata, status as Status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { ErrInvalidArgument, ErrNotAnImageArchive } from '@buildcache/errdefs';
import { connect, PROTO_ROOT } from '@buildcache/server';
import { hostRootfs, spawnCli } from '../frontend/fixtures.js';
import { run, startDaemon, tempDir, type TestDaemon } from './helpers.js';

const exec = promisify(execFile);
/** The RUN's output line after the test released it (not its command line, which also says "released"). */
const RELEASED = /^#\d+ \d+\.\d+ released$/m;

let tmp: string;
let daemon: TestDaemon;

/** The daemon's scratch directories in flight. */
const scratch = async (): Promise<string[]> => readdir(join(daemon.root, 'server', 'tmp')).catch(() => []);

/** A raw call of buildcache's Build method (what a broken client could send). */
function rawBuild(onData: (m: object) => void = () => undefined): { call: ClientDuplexStream<object, object>; done: Promise<ServiceError | undefined>; client: Client } {
  const m = (loadSync('buildcache/v1/cache.proto', { includeDirs: [PROTO_ROOT], keepCase: true, oneofs: true })['buildcache.v1.Cache'] as Record<string, MethodDefinition<object, object>>)['Build']!;
  const client = new Client(daemon.address.replace('unix://', 'unix:'), credentials.createInsecure());
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, new Metadata());
  const done = new Promise<ServiceError | undefined>((res) => {
    call.on('data', onData);
    call.on('error', (e: ServiceError) => res(e));
    call.on('end', () => res(undefined));
  });
  return { call, done, client };
}

/** Starts a CLI build (through the daemon) of `ctx` and resolves once its RUN printed `waiting` (it then blocks until /go exists). */
async function blockedBuild(ctx: string): Promise<{ child: ReturnType<typeof spawnCli>; stderr(): string; exited: Promise<number> }> {
  const child = spawnCli(['--addr', daemon.address, 'build', '--progress', 'plain', ctx]);
  let stderr = '';
  const exited = new Promise<number>((res) => child.on('close', (code) => res(code ?? 1)));
  await new Promise<void>((res, rej) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (/^#\d+ \d+\.\d+ waiting$/m.test(stderr)) res();
    });
    void exited.then(() => rej(new Error(`build ended before its RUN blocked: ${stderr}`)));
  });
  return { child, stderr: () => stderr, exited };
}

/** A build context of the test rootfs whose RUN (`extra` makes its key unique) prints `waiting` and blocks until /go exists. */
async function blockingContext(name: string, extra: string): Promise<string> {
  const ctx = join(tmp, name);
  await cp(join(tmp, 'rootfs'), join(ctx, 'rootfs'), { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nCOPY rootfs/ /\nRUN echo ${extra}; echo waiting; while [ ! -e /go ]; do sleep 0.05; done; echo released\n`);
  return ctx;
}

describe('buildcache serve: operations', () => {
  // Stopped before the temp dirs go (the file's own after hooks).
  before(async () => {
    tmp = await tempDir();
    daemon = await startDaemon(join(tmp, 'root'));
  });
  after(async () => {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });

  test('build over the daemon: context streamed with .dockerignore applied by the client; progress, digest and --output come back; import, images, export', async () => {
    const ctx = join(tmp, 'ctx');
    await mkdir(join(ctx, 'sub'), { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY . /app\n');
    await writeFile(join(ctx, 'a.txt'), 'kept\n');
    await writeFile(join(ctx, 'sub', 'b.txt'), 'kept too\n');
    await writeFile(join(ctx, 'secret.txt'), 'never sent\n');
    await writeFile(join(ctx, '.dockerignore'), 'secret.txt\n');
    const out = join(tmp, 'image.tar');
    const built = await run(['--addr', daemon.address, 'build', '--progress', 'plain', '-t', 'app:1', '-o', out, ctx]);
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.match(built.stderr, /^#2 \[1\/1\] COPY \. \/app\n#2 DONE \d+\.\ds\n/m);
    // The client wrote the archive; its one layer holds the context without the ignored file.
    const layout = join(tmp, 'layout');
    await mkdir(layout);
    await exec('tar', ['-xf', out, '-C', layout]);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(await readFile(join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
    const { stdout: files } = await exec('tar', ['-tzf', join(layout, 'blobs/sha256', manifest.layers[0]!.digest.slice(7))]);
    assert.ok(files.split('\n').some((f) => /app\/sub\/b\.txt$/.test(f)), files);
    assert.ok(files.includes('app/a.txt'), files);
    assert.ok(!files.includes('secret'), files);
    assert.ok(files.includes('.dockerignore'), 'the .dockerignore itself is sent (as docker sends it)');

    // The archive goes back in through the daemon (streamed by the client), is listed, and comes out again.
    const imported = await run(['--addr', daemon.address, 'import', out]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /Loaded image: app:1/);
    const images = await run(['--addr', daemon.address, 'images', '--format', 'json']);
    assert.equal(images.code, 0, images.stderr);
    assert.deepEqual((JSON.parse(images.stdout) as { names: string[] }[]).flatMap((i) => i.names), ['app:1']);
    const again = join(tmp, 'again.tar');
    const exported = await run(['--addr', daemon.address, 'export', 'app:1', '-o', again]);
    assert.equal(exported.code, 0, exported.stderr);
    const { stdout: listing } = await exec('tar', ['-tf', again]);
    assert.match(listing, /^index\.json$/m);
    assert.deepEqual(await scratch(), []);

    // Without --addr the locked cache names the daemon.
    const local = await run(['--root', daemon.root, 'images']);
    assert.notEqual(local.code, 0);
    assert.ok(local.stderr.includes(daemon.address), local.stderr);
  });

  test('a context stream that stops mid-way and a malformed import are typed errors; nothing is left and the daemon keeps serving', async () => {
    const { call, done, client } = rawBuild();
    call.write({ start: { buildArgs: {} } });
    // Half a tar header, then the client half-closes.
    call.write({ context: Buffer.alloc(300, 0x61) });
    call.end();
    const err = await done;
    client.close();
    assert.equal(err?.code, Status.INVALID_ARGUMENT, String(err));
    assert.match(err.details, /build context: .*stopped mid-way or is not a tar/);

    const wrongFirst = rawBuild();
    wrongFirst.call.write({ context: Buffer.alloc(10) });
    wrongFirst.call.end();
    const err2 = await wrongFirst.done;
    wrongFirst.client.close();
    assert.equal(err2?.code, Status.INVALID_ARGUMENT);
    assert.match(err2.details, /first message must carry start/);

    const c = connect(daemon.address);
    try {
      await assert.rejects(c.importArchive((async function* () {
        yield Buffer.from('this is not an image archive');
      })(), 'junk.tar'), ErrNotAnImageArchive, 'the daemon\'s error class comes back (its code trailer), not only its status');
      await assert.rejects(c.build({ context: join(tmp, 'missing') }), ErrInvalidArgument);
      // Still serving.
      const usage = [];
      for await (const u of c.diskUsage()) usage.push(u);
      assert.ok(usage.length >= 1);
    } finally {
      c.close();
    }
    assert.deepEqual(await scratch(), []);
  });

  test('cache blobs a client may not send: a digest that is no sha256 (a path), one for a cache target that is not a local layout, a have list for one, a bad cache target: INVALID_ARGUMENT, nothing written, still serving', async () => {
    const local = { type: 'local', location: '/client/dir', tag: '', mode: '', compression: '', ignoreError: false };
    const registry = { ...local, type: 'registry', location: '127.0.0.1:1/x' };
    const cases: [object, object[], RegExp][] = [
      [{ cacheFrom: [local] }, [{ cache: { cache: 0, digest: 'sha256:../../../../escaped', size: 3, mediaType: '', manifest: false, data: Buffer.from('bad') } }], /cache blob "sha256:\.\.\/.*not a sha256 digest/],
      [{ cacheFrom: [registry] }, [{ cache: { cache: 0, digest: `sha256:${'0'.repeat(64)}`, size: 0, mediaType: '', manifest: false, data: Buffer.alloc(0) } }], /cacheFrom\[0\], which is not a local layout/],
      [{ cacheTo: [registry] }, [{ have: { cache: 0, blobs: { [`sha256:${'0'.repeat(64)}`]: 0 } } }], /have list for cacheTo\[0\], which is not a local layout/],
      [{ cacheTo: [{ ...local, mode: 'maximal' }] }, [], /mode must be min or max/],
    ];
    for (const [targets, messages, why] of cases) {
      const { call, done, client } = rawBuild();
      call.write({ start: { buildArgs: {}, ...targets } });
      for (const m of messages) call.write(m);
      call.end();
      const err = await done;
      client.close();
      assert.equal(err?.code, Status.INVALID_ARGUMENT, String(err));
      assert.match(err.details, why);
    }
    const { stdout } = await exec('find', [daemon.root, '-name', 'escaped*']);
    assert.equal(stdout, '');
    assert.deepEqual(await scratch(), []);
    assert.equal((await run(['--addr', daemon.address, 'du'])).code, 0);
  });

  test('demo through the daemon: built and exported in the daemon\'s cache, the same output as in this process', async () => {
    const there = await run(['--addr', daemon.address, 'demo']);
    assert.equal(there.code, 0, there.stderr);
    const here = await run(['--root', join(tmp, 'demo-here'), 'demo']);
    assert.equal(here.code, 0, here.stderr);
    // The same lines once record IDs, digests, sizes and times are masked (the daemon's du also lists its other records).
    const mask = (text: string): string[] => text.split('\n')
      .filter((l) => !/^[a-z0-9]{26}\*?\s/.test(l) && !/^(Total|Reclaimable|Shared|\d+ records?)/.test(l))
      .map((l) => l.replace(/sha256:[0-9a-f]{64}/g, 'D').replace(/\b[a-z0-9]{26}\b/g, 'ID').replace(/\d+(\.\d+)?[kMG]?B\b/g, 'S'));
    assert.deepEqual(mask(there.stdout), mask(here.stdout));
    assert.match(there.stdout, /^building a two-layer chain:\n {2}base {2}(\S+)\n {2}app {3}(\S+)\nexporting \(getRemote, gzip\):\n {2}layer 0: sha256:/);
    const app = /^ {2}app {3}(\S+)$/m.exec(there.stdout)![1]!;
    const du = await run(['--addr', daemon.address, 'du', '--format', 'json']);
    const records = JSON.parse(du.stdout) as { id: string; description: string }[];
    assert.ok(records.some((r) => r.id === app && r.description === 'demo: app layer'), du.stdout);
    assert.deepEqual(await scratch(), []);
  });

  test('a build blocked in a runc RUN: du from another client shows its records in use, prune removes only the rest, neither waits', async () => {
    await hostRootfs(join(tmp, 'rootfs'));
    const other = join(tmp, 'other');
    await mkdir(other);
    await writeFile(join(other, 'Dockerfile'), 'FROM scratch\nCOPY x /x\n');
    await writeFile(join(other, 'x'), 'unused after this build\n');
    assert.equal((await run(['--addr', daemon.address, 'build', other])).code, 0);

    const ctx = await blockingContext('blocking', 'concurrency');
    const build = await blockedBuild(ctx);
    try {
      const du = await run(['--addr', daemon.address, 'du', '--format', 'json']);
      assert.equal(du.code, 0, du.stderr);
      const records = JSON.parse(du.stdout) as { id: string; inUse: boolean; mutable: boolean }[];
      const inUse = new Set(records.filter((r) => r.inUse).map((r) => r.id));
      assert.ok(records.some((r) => r.inUse && r.mutable), 'the RUN step\'s mutable record is in use');
      assert.ok(records.some((r) => r.inUse && !r.mutable), 'the COPY step\'s record under it is in use');
      const pruned = await run(['--addr', daemon.address, 'prune', '--all', '--format', 'json']);
      assert.equal(pruned.code, 0, pruned.stderr);
      const deleted = pruned.stdout.trim().split('\n').slice(0, -1).map((l) => (JSON.parse(l) as { id: string }).id);
      assert.ok(deleted.length >= 1, 'the other build\'s records are pruned');
      assert.ok(deleted.every((id) => !inUse.has(id)), 'nothing in use was pruned');
      assert.ok(!RELEASED.test(build.stderr()), 'du and prune answered while the RUN was still blocked');
    } finally {
      // Release the RUN: the file appears in the container's root (the bundle's rootfs mount).
      const bundles = join(daemon.root, 'frontend', 'bundles');
      for (const b of await readdir(bundles)) {
        const spec = JSON.parse(await readFile(join(bundles, b, 'config.json'), 'utf8')) as { root: { path: string } };
        await writeFile(join(spec.root.path, 'go'), '');
      }
      await build.exited;
    }
    assert.equal(await build.exited, 0, build.stderr());
    assert.match(build.stderr(), RELEASED);
    assert.deepEqual(await scratch(), []);
  });

  test('cancelling the client cancels the daemon\'s build: its container stops, its records are released, its scratch directory goes', async () => {
    const c = connect(daemon.address);
    // In use before the build: what the image store holds (the image imported above).
    const held = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const u of c.diskUsage()) if (u.inUse) out.push(`${u.id} ${u.mutable ? 'mutable' : 'immutable'} ${u.description ?? ''}`);
      return out.sort();
    };
    try {
      const before = await held();
      const build = await blockedBuild(await blockingContext('cancelled', 'cancel-me'));
      assert.equal((await scratch()).length, 1);
      assert.ok((await held()).length > before.length, 'the build holds records while it runs');
      build.child.kill('SIGINT');
      assert.notEqual(await build.exited, 0);
      assert.ok(!RELEASED.test(build.stderr()));
      // The daemon notices the cancelled call and unwinds: records released, then its scratch directory removed (bounded wait, no timing asserted).
      let now = await held();
      for (let i = 0; i < 300 && (now.length > before.length || (await scratch()).length > 0); i++) {
        await new Promise((r) => setTimeout(r, 100));
        now = await held();
      }
      assert.deepEqual(now, before, 'the build\'s records are released');
    } finally {
      c.close();
    }
    assert.deepEqual(await scratch(), []);
    const { stdout } = await exec('runc', ['--root', join(daemon.root, 'frontend', 'runc'), 'list', '-q']);
    assert.equal(stdout.trim(), '', 'no container left');
  });
  test('a client that fails on its side sends BuildAbort, mid-way through its context or while a RUN blocks: the daemon stops the build, removes the call\'s scratch directory, then ends the call CANCELLED naming the reason', async () => {
    const midway = rawBuild();
    midway.call.write({ start: { buildArgs: {} } });
    midway.call.write({ context: Buffer.alloc(300, 0x61) });
    midway.call.write({ abort: { reason: 'reading ctx/x: EACCES' } });
    const err = await midway.done;
    // Read as soon as the status is in: the daemon sends it only after the scratch directory is gone.
    assert.deepEqual(await scratch(), []);
    midway.client.close();
    assert.equal(err?.code, Status.CANCELLED, String(err));
    assert.match(err.details, /Build: aborted by the client: reading ctx\/x: EACCES/);

    const c = connect(daemon.address);
    const held = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const u of c.diskUsage()) if (u.inUse) out.push(u.id);
      return out.sort();
    };
    try {
      const before = await held();
      const ctx = await blockingContext('aborted', 'abort-me');
      const { stdout: tar } = await exec('tar', ['-cf', '-', '-C', ctx, '.'], { encoding: 'buffer', maxBuffer: 1 << 30 });
      let blocked!: () => void;
      const waiting = new Promise<void>((res) => (blocked = res));
      const blocking = rawBuild((m) => {
        const v = (m as { vertex?: { kind: string; text: string } }).vertex;
        if (v?.kind === 'log' && v.text === 'waiting') blocked();
      });
      blocking.call.write({ start: { buildArgs: {} } });
      for (let at = 0; at < tar.length; at += 1 << 20) blocking.call.write({ context: tar.subarray(at, at + (1 << 20)) });
      // The client keeps its side open after the context (to abort), and the build runs.
      blocking.call.write({ contextEnd: {} });
      await Promise.race([waiting, blocking.done.then((e) => Promise.reject(new Error(`the build ended before its RUN blocked: ${String(e)}`)))]);
      assert.equal((await scratch()).length, 1);
      blocking.call.write({ abort: { reason: 'writing the --output file: ENOSPC' } });
      const aborted = await blocking.done;
      assert.deepEqual(await scratch(), [], 'the scratch directory is gone when the status comes');
      blocking.client.close();
      assert.equal(aborted?.code, Status.CANCELLED, String(aborted));
      assert.match(aborted.details, /aborted by the client: writing the --output file: ENOSPC/);
      const { stdout } = await exec('runc', ['--root', join(daemon.root, 'frontend', 'runc'), 'list', '-q']);
      assert.equal(stdout.trim(), '', 'no container left');
      assert.deepEqual(await held(), before, 'the build\'s records are released');
    } finally {
      c.close();
    }
    assert.equal((await run(['--addr', daemon.address, 'du'])).code, 0, 'still serving');
  });
});
