/**
 * `buildcache build --cache-to/--cache-from` as a user runs it: machine B (its own --root) rebuilds
 * machine A's project from A's exported OCI layout with every step CACHED and the same digest; a
 * malformed spec is a usage error (exit 2) before anything is built. The same through daemons
 * (`--addr`): the client's layout directory streamed to and from them, a registry (Debian's
 * docker-registry on loopback) reached by them, and a registry error typed as in this process.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrUnavailable } from '@buildcache/errdefs';
import { parseCacheSpec } from '@buildcache/remotecache';
import { connect } from '@buildcache/server';
import { cli, hostRootfs } from '../frontend/fixtures.js';
import { startDaemon, type TestDaemon } from '../server/helpers.js';
import { freePort, startRegistry, type TestRegistry } from '../support/registry.js';

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

/** The lines that say a step came from the cache. */
const cachedSteps = (stderr: string): number => (stderr.match(/CACHED/g) ?? []).length;

/** The last line of the CLI's stderr (its error line), digests masked (blobs are pushed concurrently: which fails first varies). */
const lastLine = (text: string): string => (text.trimEnd().split('\n').at(-1) ?? '').replace(/sha256:[0-9a-f]{64}/g, 'sha256:…');

describe('through daemons (--addr): the local layout and the registry stay where the user has them', () => {
  let a: TestDaemon;
  let registry: TestRegistry;
  const daemons: TestDaemon[] = [];
  const daemon = async (name: string): Promise<TestDaemon> => {
    const d = await startDaemon(join(tmp, name));
    daemons.push(d);
    return d;
  };
  /** The daemons' scratch directories still there (a call's copies of layouts and contexts). */
  const leftovers = async (): Promise<string[]> => (await Promise.all(daemons.map((d) => readdir(join(d.root, 'server', 'tmp')).catch(() => [])))).flat();

  before(async () => {
    a = await daemon('daemon-a');
    registry = await startRegistry();
  });
  after(async () => {
    for (const d of daemons) {
      d.child.kill('SIGTERM');
      await d.exited;
    }
    await registry?.stop();
  });

  test('type=local: A exports through its daemon into the client\'s DIR, B imports it through its own: every step CACHED, same digest', async () => {
    const layout = join(tmp, 'layout-daemon');
    const ra = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctx]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.match(ra.stderr, new RegExp(`exporting cache to local ${layout} \\(tag latest\\)`));
    assert.doesNotMatch(ra.stderr, /\(0 uploaded\)/);
    // Merged as an in-process export does: one manifest tagged latest, its blobs there, no lock left.
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const tagged = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest');
    assert.equal(tagged.length, 1);
    const manifest = JSON.parse(await readFile(join(layout, 'blobs/sha256', tagged[0]!.digest.slice(7)), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [manifest.config, ...manifest.layers]) await stat(join(layout, 'blobs/sha256', d.digest.slice(7)));
    assert.ok(!(await readdir(layout)).includes('index.json.lock'));

    // Again into the same DIR: the client said which blobs it holds, so none is sent back.
    const again = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctx]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /layers \(0 uploaded\)/);

    const b = await daemon('daemon-b');
    const ctxB = join(tmp, 'ctx-daemon-b');
    await cp(ctx, ctxB, { recursive: true });
    const rb = await cli(['--addr', b.address, 'build', '--progress', 'plain', '--cache-from', `type=local,src=${layout}`, ctxB]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stderr, new RegExp(`importing cache manifest from local ${layout} \\(tag latest\\)`));
    assert.equal(cachedSteps(rb.stderr), 3, rb.stderr);
    assert.equal(rb.stdout, ra.stdout, 'same image digest');
    assert.deepEqual(await leftovers(), []);
  });

  test('type=local: a --cache-to DIR holding more blobs than one message can list (60,000 files named like blobs beside the real ones): the list goes in several messages, the build succeeds, nothing DIR holds is sent back', async () => {
    const layout = join(tmp, 'layout-many');
    const first = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctx]);
    assert.equal(first.code, 0, first.stderr);
    // 60,000 digests and sizes take about 4.6 MB listed in one message, over the daemon's 4 MiB.
    const blobs = join(layout, 'blobs', 'sha256');
    const names = Array.from({ length: 60_000 }, (_, i) => createHash('sha256').update(`not a cache blob ${i}`).digest('hex'));
    for (let at = 0; at < names.length; at += 1000) await Promise.all(names.slice(at, at + 1000).map((n) => writeFile(join(blobs, n), '')));
    const held = (await readdir(blobs)).length;
    const again = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctx]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /layers \(0 uploaded\)/, 'the real blobs, wherever they fell in the list, counted as held');
    assert.equal(again.stdout, first.stdout);
    assert.equal((await readdir(blobs)).length, held, 'nothing written to DIR');
    assert.deepEqual(await leftovers(), []);
  });

  test('type=registry: the daemons push and pull the cache: every step CACHED on the second, same digest', async () => {
    const ref = `${registry.host}/cache/app:daemon`;
    const ra = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.match(ra.stderr, /exporting cache to registry /);
    const c = await daemon('daemon-c');
    const ctxC = join(tmp, 'ctx-daemon-c');
    await cp(ctx, ctxC, { recursive: true });
    const rc = await cli(['--addr', c.address, 'build', '--progress', 'plain', '--cache-from', `type=registry,ref=${ref}`, ctxC]);
    assert.equal(rc.code, 0, rc.stderr);
    assert.match(rc.stderr, /importing cache manifest from registry /);
    assert.equal(cachedSteps(rc.stderr), 3, rc.stderr);
    assert.equal(rc.stdout, ra.stdout, 'same image digest');
  });

  test('type=local --cache-from: only the blobs the build reads go to the daemon (a layer of a step it does not share stays with the client); its hits are CACHED', async () => {
    // A's project ends with a 6 MiB layer; B's shares A's first two steps, then runs its own.
    const ctxA = join(tmp, 'ctx-lazy-a');
    await cp(ctx, ctxA, { recursive: true });
    await writeFile(join(ctxA, 'big.bin'), randomBytes(6 << 20));
    await writeFile(join(ctxA, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nCOPY src/ /src/\nCOPY big.bin /big.bin\n');
    const layout = join(tmp, 'layout-lazy');
    const ra = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', `type=local,dest=${layout},mode=max`, ctxA]);
    assert.equal(ra.code, 0, ra.stderr);
    const blobs = join(layout, 'blobs', 'sha256');
    const sizes = await Promise.all((await readdir(blobs)).map(async (n) => ({ digest: `sha256:${n}`, size: (await stat(join(blobs, n))).size })));
    const big = sizes.filter((b) => b.size >= 6 << 20).map((b) => b.digest);
    assert.equal(big.length, 1, JSON.stringify(sizes));

    const d = await daemon('daemon-lazy');
    const ctxB = join(tmp, 'ctx-lazy-b');
    await cp(ctx, ctxB, { recursive: true });
    await writeFile(join(ctxB, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nCOPY src/ /src/\nRUN cat /src/a.txt > /other.txt\n');
    const rb = await cli(['--addr', d.address, 'build', '--progress', 'plain', '--cache-from', `type=local,src=${layout}`, ctxB]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(cachedSteps(rb.stderr), 2, rb.stderr);
    // The daemon's count of the blobs the client sent it for the call.
    const received = d.stderr().split('\n').filter((l) => l.includes('cache-from blobs received')).map((l) => JSON.parse(l) as { blobs: number; bytes: number; digests: string[] });
    assert.equal(received.length, 1, d.stderr());
    assert.ok(!received[0]!.digests.includes(big[0]!), `the unused layer was sent: ${JSON.stringify(received[0])}`);
    assert.ok(received[0]!.bytes < 6 << 20, JSON.stringify(received[0]));
    assert.ok(received[0]!.digests.every((g) => sizes.some((b) => b.digest === g)), 'only blobs of the layout');
    assert.ok(received[0]!.blobs >= 2, 'the cache description and a layer the RUN mounts');
    assert.deepEqual(await leftovers(), []);
  });

  test('a --cache-to DIR the client cannot write: ignore-error=true warns and succeeds, without it the build fails, both as in this process', async () => {
    const file = join(tmp, 'not-a-dir');
    await writeFile(file, '');
    const dest = join(file, 'layout');
    // For the failing build, 16,000 more files the build does not use: the daemon's copy of the context
    // takes a while to remove (an old client, which cancelled and exited at once, left it there in 3 of 3 runs).
    const big = join(tmp, 'ctx-many');
    await cp(ctx, big, { recursive: true });
    await mkdir(join(big, 'many'));
    for (let at = 0; at < 16_000; at += 500) await Promise.all(Array.from({ length: 500 }, (_, i) => writeFile(join(big, 'many', `f${at + i}`), `${at + i}\n`)));
    for (const [extra, code] of [[',ignore-error=true', 0], ['', 1]] as const) {
      const spec = `type=local,dest=${dest}${extra}`;
      const context = code === 0 ? ctx : big;
      const here = await cli(['--root', join(tmp, 'a'), 'build', '--progress', 'plain', '--cache-to', spec, context]);
      const there = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', spec, context]);
      // A client that failed on its side aborted the call and waited for the daemon to end it, which
      // it does once the call's scratch directory is gone: nothing is left when the CLI exits.
      assert.deepEqual(await leftovers(), [], `${spec}: the call's scratch directory is gone when the CLI exits`);
      assert.equal(here.code, code, here.stderr);
      assert.equal(there.code, code, there.stderr);
      assert.match(lastLine(there.stderr), /ENOTDIR/);
      if (code === 0) {
        assert.match(there.stderr, new RegExp(`WARNING: cache export to local ${dest} \\(tag latest\\) failed: ENOTDIR`));
        assert.match(here.stderr, new RegExp(`WARNING: cache export to local ${dest} \\(tag latest\\) failed: ENOTDIR`));
      }
    }
  });

  test('a registry that does not answer: the same typed error and exit code through the daemon as in this process', async () => {
    const dead = `127.0.0.1:${await freePort()}/cache/app:dead`;
    const spec = `type=registry,ref=${dead}`;
    const here = await cli(['--root', join(tmp, 'a'), 'build', '--progress', 'plain', '--cache-to', spec, ctx]);
    const there = await cli(['--addr', a.address, 'build', '--progress', 'plain', '--cache-to', spec, ctx]);
    assert.notEqual(here.code, 0, here.stderr);
    assert.equal(there.code, here.code, there.stderr);
    assert.equal(lastLine(there.stderr), lastLine(here.stderr));
    const client = connect(a.address);
    try {
      await assert.rejects(client.build({ context: ctx, cacheTo: [parseCacheSpec(spec, 'to')] }), (err: Error) => {
        assert.ok(err instanceof ErrUnavailable, `${err.name}: ${err.message}`);
        return true;
      });
    } finally {
      client.close();
    }
    assert.deepEqual(await leftovers(), []);
  });
});
