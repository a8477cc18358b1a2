/**
 * The build frontend on a real cache, real mounts and real runc: a second build of an unchanged
 * project runs no step (no `runc run`) and gives the same image; a touched mtime changes nothing;
 * one changed byte reruns that COPY and every later step only; `--no-cache` reruns all; COPY
 * semantics (wildcards, dirs, files, --chown, .dockerignore); the OCI layout tar of `output`; and bad input as typed errors that
 * leave nothing half-done in the cache.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, lstat, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { openCache, type OpenCache } from '@buildcache/cache';
import { ErrCopySource, ErrDockerfileParse, ErrRunFailed, type BuildcacheError } from '@buildcache/errdefs';
import { Frontend, type BuildRequest, type BuildResult, type Progress } from '@buildcache/frontend';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import { mountPointsUnder } from '@buildcache/snapshot';
import { countingRuntime, hostRootfs, readRecordFile } from './fixtures.js';

const silent = pino({ level: 'silent' });
const run = promisify(execFile);

/** A progress that keeps every line (vertex name, then its events). */
function recorder(): Progress & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    vertex(name) {
      lines.push(name);
      return {
        log: (l) => lines.push(`  ${l}`),
        cached: () => lines.push(`  CACHED`),
        done: () => lines.push(`  DONE`),
        error: (m) => lines.push(`  ERROR ${m}`),
      };
    },
    close() {},
  };
}

const FIVE_STEPS = `FROM scratch
COPY rootfs/ /
ARG FLAVOUR=plain
ENV GREETING=hello
WORKDIR /app
COPY src/ ./src/
RUN echo "$GREETING $FLAVOUR $(cat src/a.txt)" > out.txt
RUN cat out.txt src/b.txt > all.txt
CMD ["/bin/cat", "/app/all.txt"]
`;

let tmp: string;
let rootfs: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-frontend-'));
  rootfs = join(tmp, 'rootfs');
  await hostRootfs(rootfs);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh context with the rootfs and `files`. */
async function project(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  const { cp } = await import('node:fs/promises');
  await cp(rootfs, join(dir, 'rootfs'), { recursive: true });
  for (const [path, body] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), body);
  }
  return dir;
}

describe('build frontend', () => {
  let opened: OpenCache;
  let layers: LayerStore;
  let images: ImageStore;
  let frontend: Frontend;
  let runtime: Awaited<ReturnType<typeof countingRuntime>>;
  let root: string;

  before(async () => {
    root = join(tmp, 'cache');
    await mkdir(root, { recursive: true });
    runtime = await countingRuntime(tmp);
    opened = await openCache({ root, logger: silent });
    layers = await LayerStore.open({ cache: opened.cache, root: join(root, 'layers') });
    images = await ImageStore.open({ layers, root: join(root, 'layers', 'images') });
    frontend = await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), runtime: runtime.path, logger: silent, images });
  });
  after(async () => {
    await images.close();
    await layers.close();
    await opened.close();
  });

  const build = async (req: BuildRequest): Promise<BuildResult & { lines: string[] }> => {
    const progress = recorder();
    const result = await frontend.build({ ...req, progress });
    return { ...result, lines: progress.lines };
  };
  const cachedOf = (r: BuildResult): boolean[] => r.steps.map((s) => s.cached);

  /** Reads a file of the image's top record. */
  const readImageFile = (record: string, path: string): Promise<string> => readRecordFile(opened.cache, record, path);

  test('a second build of an unchanged project is all CACHED, runs no runc, and gives the same image digest', async () => {
    const ctx = await project('p1', { Dockerfile: FIVE_STEPS, 'src/a.txt': 'A', 'src/b.txt': 'B\n' });
    const first = await build({ context: ctx });
    assert.deepEqual(cachedOf(first), [false, false, false, false, false]);
    assert.equal(await runtime.runs(), 2);
    assert.equal(await readImageFile(first.record!, 'app/all.txt'), 'hello plain A\nB\n');
    const second = await build({ context: ctx });
    assert.deepEqual(cachedOf(second), [true, true, true, true, true]);
    assert.equal(second.executed, 0);
    assert.equal(await runtime.runs(), 2, 'no runc run on the cached build');
    assert.equal(second.digest, first.digest);
    assert.ok(second.lines.includes('[5/5] RUN cat out.txt src/b.txt > all.txt'));
    assert.equal(second.lines.filter((l) => l === '  CACHED').length, 5);
    const config = JSON.parse(second.image.configBytes.toString()) as { config: { Cmd: string[]; WorkingDir: string; Env: string[] }; rootfs: { diff_ids: string[] } };
    assert.deepEqual(config.config.Cmd, ['/bin/cat', '/app/all.txt']);
    assert.equal(config.config.WorkingDir, '/app');
    assert.deepEqual(config.config.Env, ['GREETING=hello']);
    assert.equal(config.rootfs.diff_ids.length, 5);

    // A touched file (mtime only) keeps every step cached.
    const later = new Date(Date.now() + 3600_000);
    await utimes(join(ctx, 'src/a.txt'), later, later);
    const touched = await build({ context: ctx });
    assert.deepEqual(cachedOf(touched), [true, true, true, true, true]);
    assert.equal(await runtime.runs(), 2);

    // One changed byte: that COPY and every later step rerun; earlier steps stay cached.
    await writeFile(join(ctx, 'src/a.txt'), 'Z');
    const changed = await build({ context: ctx });
    assert.deepEqual(cachedOf(changed), [true, true, false, false, false]);
    assert.equal(await runtime.runs(), 4);
    assert.equal(await readImageFile(changed.record!, 'app/all.txt'), 'hello plain Z\nB\n');
    assert.notEqual(changed.digest, first.digest);

    // A changed build arg reruns the RUN steps that see it.
    const arg = await build({ context: ctx, buildArgs: { FLAVOUR: 'spicy' } });
    assert.deepEqual(cachedOf(arg), [true, true, true, false, false]);
    assert.equal(await readImageFile(arg.record!, 'app/all.txt'), 'hello spicy Z\nB\n');

    // --no-cache: every step runs again.
    const runsBefore = await runtime.runs();
    const nocache = await build({ context: ctx, noCache: true });
    assert.deepEqual(cachedOf(nocache), [false, false, false, false, false]);
    assert.equal(await runtime.runs(), runsBefore + 2);
    assert.deepEqual(await frontend.containers(), []);
  });

  test('output: an OCI image layout tar (GNU tar reads it) whose index names the image and whose blobs match their digests', async () => {
    const ctx = await project('p-output', { Dockerfile: FIVE_STEPS, 'src/a.txt': 'A', 'src/b.txt': 'B\n' });
    const out = join(tmp, 'p-output.tar');
    const r = await build({ context: ctx, tag: 'out-app:v1', output: out });
    const dir = join(tmp, 'p-output-layout');
    await mkdir(dir);
    await run('tar', ['-xf', out, '-C', dir]);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]!.digest, r.digest);
    assert.equal(index.manifests[0]!.annotations['io.containerd.image.name'], 'docker.io/library/out-app:v1');
    assert.equal(index.manifests[0]!.annotations['org.opencontainers.image.ref.name'], 'v1');
    const blob = (digest: string): string => join(dir, 'blobs/sha256', digest.slice('sha256:'.length));
    const manifest = JSON.parse(await readFile(blob(r.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string; size: number }[] };
    assert.equal(manifest.layers.length, 5);
    for (const d of [r.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      const bytes = await readFile(blob(d));
      assert.equal('sha256:' + createHash('sha256').update(bytes).digest('hex'), d);
    }
    for (const l of manifest.layers) assert.equal((await lstat(blob(l.digest))).size, l.size);
  });

  test('COPY: file and dir sources, wildcards, --chown by name and id, --chmod, and .dockerignore', async () => {
    const ctx = await project('p2', {
      Dockerfile: `FROM scratch
COPY rootfs/ /
COPY --chown=app:app one.txt /dst/
COPY --chown=1234 one.txt /renamed.txt
COPY --chmod=600 *.md /docs/
COPY tree /tree
COPY . /all/
`,
      'one.txt': '1',
      'a.md': 'a',
      'b.md': 'b',
      'tree/x/y.txt': 'y',
      'tree/secret.key': 'no',
      'tree/keep.key': 'yes',
      '.dockerignore': 'tree/*.key\n!tree/keep.key\n**/*.tmp\n',
      'tree/x/junk.tmp': 'junk',
    });
    const r = await build({ context: ctx });
    const ref = await opened.cache.get(r.record!);
    const m = await ref.mount();
    try {
      const at = (p: string): string => join(m.target, p);
      const st = await lstat(at('dst/one.txt'));
      assert.deepEqual([st.uid, st.gid], [1000, 1000]);
      const renamed = await lstat(at('renamed.txt'));
      assert.deepEqual([renamed.uid, renamed.gid, renamed.isFile()], [1234, 1234, true]);
      assert.equal((await lstat(at('docs/a.md'))).mode & 0o777, 0o600);
      assert.equal(await readFile(at('docs/b.md'), 'utf8'), 'b');
      assert.equal(await readFile(at('tree/x/y.txt'), 'utf8'), 'y');
      assert.equal(await readFile(at('tree/keep.key'), 'utf8'), 'yes');
      await assert.rejects(lstat(at('tree/secret.key')), { code: 'ENOENT' });
      await assert.rejects(lstat(at('tree/x/junk.tmp')), { code: 'ENOENT' });
      await assert.rejects(lstat(at('all/tree/secret.key')), { code: 'ENOENT' });
      assert.equal(await readFile(at('all/one.txt'), 'utf8'), '1');
      assert.equal((await lstat(at('all/tree/x'))).isDirectory(), true);
    } finally {
      await m.unmount();
      await ref.release();
    }
    // Editing an ignored file changes no checksum: everything stays cached.
    await writeFile(join(ctx, 'tree/secret.key'), 'changed');
    const again = await build({ context: ctx });
    assert.ok(cachedOf(again).every(Boolean));
  });

  test('bad input is a typed error naming the line or path, and changes nothing', async () => {
    const cases: [string, new (...a: never[]) => BuildcacheError, RegExp][] = [
      ['FROM scratch\nFROB x\n', ErrDockerfileParse, /^Dockerfile:2: unknown instruction: FROB/],
      ['FROM scratch\nCOPY a b\nADD x /y\n', ErrDockerfileParse, /^Dockerfile:3: unsupported instruction ADD/],
      ['FROM scratch\nRUN --mount=type=cache,target=/x true\n', ErrDockerfileParse, /^Dockerfile:2: RUN --mount is not supported/],
      ['FROM scratch\nCOPY ../x /x\n', ErrCopySource, /"\.\.\/x": outside of the build context/],
      ['FROM scratch\nCOPY missing.txt /x\n', ErrCopySource, /^failed to compute cache key: "missing.txt": not found$/],
      ['FROM scratch\nCOPY nomatch* /x/\n', ErrCopySource, /^failed to compute cache key: "nomatch\*": not found$/],
      ['COPY a /b\n', ErrDockerfileParse, /no FROM/],
    ];
    const ctx = await project('p3', {});
    for (const [dockerfile, cls, message] of cases) {
      await writeFile(join(ctx, 'Dockerfile'), dockerfile);
      const runs = await runtime.runs();
      await assert.rejects(build({ context: ctx }), (err: Error) => err instanceof cls && message.test(err.message), dockerfile);
      assert.equal(await runtime.runs(), runs);
    }
    const lines = await ((): Promise<string[]> => {
      const p = recorder();
      return frontend.build({ context: ctx, progress: p }).then(() => [], () => p.lines);
    })();
    assert.ok(lines.some((l) => l.startsWith('  ERROR')));
  });

  test('a RUN that exits non-zero: its exit code and last lines, its record released, nothing cached', async () => {
    const ctx = await project('p4', {
      Dockerfile: 'FROM scratch\nCOPY rootfs/ /\nRUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; echo oops >&2; exit 3\n',
    });
    const mutableBefore = await mutableRecords();
    let err: ErrRunFailed | undefined;
    await build({ context: ctx }).catch((e: unknown) => (err = e as ErrRunFailed));
    assert.ok(err instanceof ErrRunFailed, String(err));
    assert.equal(err.details['exitCode'], 3);
    assert.equal(err.details['line'], 3);
    assert.match(err.message, /did not complete successfully: exit code: 3/);
    assert.match(err.message, /\nline12(\noops)?$/);
    assert.doesNotMatch(err.message, /line2\n/, 'only the last lines');
    assert.equal(await mutableRecords(), mutableBefore, 'the failed step left no mutable record');
    assert.deepEqual(await frontend.containers(), []);
    assert.deepEqual(await mountPointsUnder(root), []);
    // Nothing of the failed step was cached: it runs again (and fails again).
    const runs = await runtime.runs();
    const again = await build({ context: ctx }).catch((e: unknown) => e as ErrRunFailed);
    assert.ok(again instanceof ErrRunFailed);
    assert.equal(await runtime.runs(), runs + 1);
  });

  async function mutableRecords(): Promise<number> {
    let n = 0;
    for await (const u of opened.cache.diskUsage({ filters: ['mutable'] })) if (u.mutable) n++;
    return n;
  }

  test('RUN exec form, USER by name, ENV and WORKDIR are seen by the process; output is streamed', async () => {
    const ctx = await project('p5', {
      Dockerfile: `FROM scratch
COPY rootfs/ /
ENV A=1 B="two words"
WORKDIR /w
USER app
RUN ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) a=$A b=$B pwd=$(pwd); /usr/bin/env > /env.txt; test -n $PATH && echo has-path; echo to-stderr >&2"]
`,
    });
    const r = await build({ context: ctx });
    assert.ok(r.lines.includes('  uid=1000 gid=1000 a=1 b=two words pwd=/w'), r.lines.join('\n'));
    assert.ok(r.lines.includes('  has-path'));
    assert.ok(r.lines.includes('  to-stderr'));
  });

  test('tag records the image in the image store: listed, its layers the build records, its config the build\'s; FROM NAME starts from its layers and config', async () => {
    const base = await project('p6', { Dockerfile: 'FROM scratch\nCOPY rootfs/ /\nENV FROM_BASE=yes\n' });
    const b = await build({ context: base, tag: 'bc-test-base:1' });
    const listed = images.get('bc-test-base:1');
    assert.equal(listed.id, b.imageId);
    assert.deepEqual(listed.names, ['bc-test-base:1']);
    assert.equal(listed.layers, 1);
    const stored = images.resolve('bc-test-base:1');
    assert.ok(layers.list().some((m) => m.chainID === stored.topLayer?.chainID && m.refs > 0), 'the image holds its layer in the layer store');
    assert.ok(stored.config.config?.Env?.includes('FROM_BASE=yes'));
    assert.deepEqual(JSON.parse(b.image.configBytes.toString('utf8')), stored.config, 'the same config (the embedded differ gives the layer store\'s diff IDs)');
    const app = await project('p7', { Dockerfile: 'FROM bc-test-base:1\nRUN echo base=$FROM_BASE > /x\n' });
    const r = await build({ context: app });
    assert.deepEqual(cachedOf(r), [false]);
    assert.equal(await readImageFile(r.record!, 'x'), 'base=yes\n');
    assert.equal(r.image.layers.length, b.image.layers.length + 1);
    await appendFile(join(app, 'Dockerfile'), '');
    assert.deepEqual(cachedOf(await build({ context: app })), [true]);
    // the image store holds the named image's records: prune --all keeps them, FROM NAME still works
    await opened.cache.prune([{ all: true }]);
    const again = await build({ context: app });
    assert.deepEqual(cachedOf(again), [false]);
    assert.equal(await readImageFile(again.record!, 'x'), 'base=yes\n');
  });

  test('a name of the old frontend tag table moves into the image store when the frontend opens', async () => {
    const ctx = await project('p-old-tag', { Dockerfile: 'FROM scratch\nCOPY rootfs/bin/sh /bin/sh\n' });
    const b = await build({ context: ctx });
    const table = join(root, 'frontend', 'images');
    await mkdir(table, { recursive: true });
    const config = { Env: ['OLD=1'], WorkingDir: '', User: '', Labels: {} };
    await writeFile(join(table, 'x.json'), JSON.stringify({ name: 'docker.io/library/old-tag:v1', digest: b.digest, config, record: b.record }));
    await writeFile(join(table, 'y.json'), JSON.stringify({ name: 'docker.io/library/pruned-tag:v1', digest: b.digest, config, record: 'no-such-record' }));
    await Frontend.open({ cache: opened.cache, content: opened.backend.content, root: join(root, 'frontend'), runtime: runtime.path, logger: silent, images });
    await assert.rejects(lstat(table), /ENOENT/);
    const moved = images.resolve('old-tag:v1');
    assert.equal(moved.topLayer?.recordId, b.record);
    assert.deepEqual(moved.config.config?.Env, ['OLD=1']);
    assert.throws(() => images.resolve('pruned-tag:v1'), /no image/);
  });
});
