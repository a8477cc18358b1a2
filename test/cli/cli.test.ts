/** The `buildcache` command end to end, in a child process, on the embedded backend and on containerd. */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { containerdAddress } from '../harness/containerd.js';

const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `as` is a command prefix that switches user (see `normalUser`). */
function run(args: string[], env: NodeJS.ProcessEnv = {}, as: readonly string[] = []): Promise<Run> {
  const [file, ...argv] = [...as, process.execPath, bin, ...args] as [string, ...string[]];
  return new Promise((res) => {
    execFile(file, argv, { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      res({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}

const setups: { name: string; global: () => Promise<string[]> }[] = [
  {
    name: 'embedded (default backend)',
    global: async () => ['--root', await mkdtemp(join(tmpdir(), 'bc-cli-'))],
  },
  {
    name: 'containerd',
    global: async () => [
      '--root', await mkdtemp(join(tmpdir(), 'bc-cli-')),
      '--containerd', containerdAddress(),
      '--namespace', `bccli-${randomBytes(4).toString('hex')}`,
    ],
  },
];

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

for (const setup of setups) {
  describe(`buildcache CLI on ${setup.name}`, () => {
    test('demo builds and exports a chain, then du, prune --dry-run, prune, du', async () => {
      const g = await setup.global();
      roots.push(g[1]!);
      const demo = await run([...g, 'demo']);
      assert.equal(demo.code, 0, demo.stderr);
      assert.match(demo.stdout, /layer 0: sha256:[0-9a-f]{64}/);
      assert.match(demo.stdout, /layer 1: sha256:[0-9a-f]{64}/);
      assert.match(demo.stdout, /^ID\s+RECLAIMABLE\s+SIZE\s+LAST ACCESSED$/m);
      assert.match(demo.stdout, /^Total:\s+\d+\.\d\d[kMG]B$/m);

      const json = await run([...g, 'du', '--format', 'json']);
      assert.equal(json.code, 0, json.stderr);
      const records = JSON.parse(json.stdout) as { id: string; size: number; parents: string[]; description: string; inUse: boolean }[];
      assert.equal(records.length, 2);
      const base = records.find((r) => r.description === 'demo: base layer');
      const app = records.find((r) => r.description === 'demo: app layer');
      assert.ok(base && app);
      assert.deepEqual(app.parents, [base.id]);
      assert.ok(records.every((r) => r.size > 0 && !r.inUse));

      const table = await run([...g, 'du']);
      assert.equal(table.code, 0);
      assert.ok(table.stdout.includes(base.id) && table.stdout.includes(app.id));
      assert.match(table.stdout, /Reclaimable:/);
      const verbose = await run([...g, 'du', '-v', '--filter', `id==${app.id}`]);
      assert.match(verbose.stdout, new RegExp(`Parents:\\s+${base.id}`));
      assert.doesNotMatch(verbose.stdout, /Total:/, 'no totals with a filter');

      const dry = await run([...g, 'prune', '--dry-run']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.ok(dry.stdout.includes(app.id) && dry.stdout.includes(base.id));
      assert.match(dry.stdout, /Total \(dry run\):/);
      assert.equal(JSON.parse((await run([...g, 'du', '--format', 'json'])).stdout).length, 2, 'dry run kept everything');

      const pruned = await run([...g, 'prune', '--format', 'json']);
      assert.equal(pruned.code, 0, pruned.stderr);
      const objects = pruned.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id?: string; count?: number; total?: number });
      const result = objects.at(-1)!;
      assert.equal(result.count, 2);
      assert.deepEqual(objects.slice(0, -1).map((d) => d.id), [app.id, base.id], 'child first');
      assert.ok(result.total! > 0);
      assert.deepEqual(JSON.parse((await run([...g, 'du', '--format', 'json'])).stdout), []);
    });

    test('bad input: one clear line on stderr and a non-zero exit code', async () => {
      const g = await setup.global();
      roots.push(g[1]!);
      const cases: [string[], number, RegExp][] = [
        [['du', '--filter', 'colour==red'], 2, /unknown filter field "colour"/],
        [['prune', '--keep-duration', '5x'], 2, /--keep-duration: invalid duration "5x"/],
        [['prune', '--keep-storage', 'lots'], 2, /--keep-storage: invalid size "lots"/],
        [['du', '--format', 'yaml'], 2, /unknown format "yaml"/],
        [['frobnicate'], 2, /unknown command "frobnicate"/],
        [['du', '--all'], 2, /du: unknown flag --all/],
      ];
      for (const [args, code, message] of cases) {
        const r = await run([...g, ...args]);
        assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      }
    });
  });
}

test('an unreachable containerd socket is named in the error', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bc-cli-'));
  roots.push(root);
  const r = await run(['--root', root, '--containerd', '/nonexistent/containerd.sock', 'du']);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /\/nonexistent\/containerd\.sock/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('--help and --version', async () => {
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: buildcache/);
  const v = await run(['--version']);
  assert.match(v.stdout, /^buildcache \d+\.\d+\.\d+\n$/);
});

/**
 * A normal (non-root) user for the tests, created once (idempotent): its uid, gid and the command
 * prefix that runs a program as it. When the user cannot read this checkout (a clone under a
 * private home), the prefix keeps CAP_DAC_READ_SEARCH only, to read the code; the process still
 * runs as that uid, without the right to mount or chown.
 */
async function normalUser(name: string): Promise<{ uid: number; gid: number; as: string[] }> {
  const exec = promisify(execFile);
  const id = async (flag: string): Promise<number> => Number((await exec('id', [flag, name])).stdout.trim());
  await exec('id', [name]).catch(() =>
    exec('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name]).catch(async (err: unknown) => {
      await exec('id', [name]).catch(() => Promise.reject(err)); // another test process created it meanwhile
    }),
  );
  const uid = await id('-u');
  const gid = await id('-g');
  const plain = ['runuser', '-u', name, '--'];
  const readable = await exec(plain[0]!, [...plain.slice(1), 'test', '-r', bin]).then(() => true, () => false);
  const as = readable
    ? plain
    : ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search'];
  return { uid, gid, as };
}

describe('buildcache CLI as a normal user (embedded backend)', () => {
  const user = 'buildcache-test';
  test('demo, du and prune work without root and leave nothing behind', async () => {
    const { uid, gid, as } = await normalUser(user);
    const dir = await mkdtemp(join(tmpdir(), 'bc-cli-user-'));
    roots.push(dir);
    await chown(dir, uid, gid);
    const root = join(dir, 'cache');
    const g = ['--root', root];
    const demo = await run([...g, 'demo'], {}, as);
    assert.equal(demo.code, 0, demo.stderr);
    assert.match(demo.stdout, /layer 1: sha256:[0-9a-f]{64}/);
    const records = JSON.parse((await run([...g, 'du', '--format', 'json'], {}, as)).stdout) as { size: number }[];
    assert.equal(records.length, 2);
    assert.ok(records.every((r) => r.size > 0));
    const pruned = await run([...g, 'prune', '--format', 'json'], {}, as);
    assert.equal(pruned.code, 0, pruned.stderr);
    const lines = pruned.stdout.trim().split('\n').map((l) => JSON.parse(l) as { count?: number });
    assert.equal(lines.at(-1)?.count, 2, 'prune --format json ends with its totals');
    assert.deepEqual(JSON.parse((await run([...g, 'du', '--format', 'json'], {}, as)).stdout), []);
    const backend = join(root, 'backend');
    assert.deepEqual(await readdir(join(backend, 'snapshots')), [], 'no snapshot directory left');
    assert.deepEqual(await readdir(join(backend, 'content', 'blobs', 'sha256')), [], 'no blob left');
    assert.deepEqual(await readdir(join(backend, 'mounts')), [], 'no temp mount point left');
    assert.equal((await stat(join(backend, 'meta'))).uid, uid, 'everything belongs to the user');
  });

  test('the overlayfs snapshotter fails up front with one line saying it needs root', async () => {
    const { uid, gid, as } = await normalUser(user);
    const dir = await mkdtemp(join(tmpdir(), 'bc-cli-user-'));
    roots.push(dir);
    await chown(dir, uid, gid);
    const r = await run(['--root', join(dir, 'cache'), '--snapshotter', 'overlayfs', 'demo'], {}, as);
    assert.equal(r.code, 4, 'exit code 4: permission denied');
    assert.match(r.stderr, /needs root/);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.deepEqual(await readdir(dir), [], 'nothing was created');
  });
});
