/**
 * `buildcache serve` as a process: the CLI through `--addr` / `BUILDCACHE_HOST` (same output and exit
 * codes as the direct path), the lock message of a direct open, the socket's mode, owner and group
 * (a non-member refused), a live socket refused and a stale one replaced, and graceful shutdown.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { access, chmod, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect } from '@buildcache/server';
import { pino } from 'pino';
import { DAEMON_FILE, openCache } from '@buildcache/cache';
import { containerdAddress } from '../harness/containerd.js';
import { BuildkitClient, run, startDaemon, syntheticRoot, tempDir, type Run } from './helpers.js';

const exec = promisify(execFile);
const DAY = 24 * 3600_000;
const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

/** The parts of a run the two paths must share. */
const same = (r: Run): { code: number | null; stdout: string; stderr: string } => ({ code: r.code, stdout: r.stdout, stderr: r.stderr });

describe('buildcache serve: the CLI as a client', () => {
  test('du and prune through --addr and BUILDCACHE_HOST print what the direct path prints, with the same exit codes', async () => {
    // Last used days ago, so that "LAST ACCESSED" reads the same a few seconds apart.
    const now = Date.now();
    const root = await syntheticRoot(40, (i) => ({ lastUsedAt: now - 3 * DAY - i * 60_000 }));
    const commands = [
      ['du'],
      ['du', '--format', 'json'],
      ['du', '-f', 'colour==red'],
      ['prune', '--dry-run', '--keep-storage', '0.1', '--format', 'json'],
    ];
    const direct: Run[] = [];
    for (const c of commands) direct.push(await run(['--root', root, ...c]));
    assert.deepEqual(direct.map((r) => r.code), [0, 0, 2, 0]);
    const daemon = await startDaemon(root);
    for (const [i, c] of commands.entries()) {
      assert.deepEqual(same(await run(['--addr', daemon.address, ...c])), same(direct[i]!), c.join(' '));
    }
    assert.deepEqual(same(await run(commands[1]!, { env: { BUILDCACHE_HOST: daemon.address } })), same(direct[1]!));
    // A real prune through the daemon streams rows and its total, as the direct path does.
    const pruned = await run(['--addr', daemon.address, 'prune', '--all', '--format', 'json']);
    assert.equal(pruned.code, 0);
    const last = JSON.parse(pruned.stdout.trim().split('\n').at(-1)!) as { count: number; complete: boolean };
    assert.deepEqual(last, { ...last, count: 40, complete: true });
    assert.equal(JSON.parse((await run(['--addr', daemon.address, 'du', '--format', 'json'])).stdout).length, 0);
    const flags = await run(['--addr', daemon.address, '--root', root, 'du']);
    assert.equal(flags.code, 2);
    assert.match(flags.stderr, /--root names a cache to open here, --addr a daemon/);
    daemon.child.kill('SIGTERM');
    assert.deepEqual(await daemon.exited, { code: 0, signal: null });
  });

  test('a direct open of a served cache says which daemon holds it and to use --addr (exit 3)', async () => {
    const root = await syntheticRoot(3);
    const daemon = await startDaemon(root);
    const r = await run(['--root', root, 'du']);
    assert.equal(r.code, 3);
    assert.equal(r.stderr.split('\n')[0], `buildcache: cache ${root} is locked by a running daemon at ${daemon.address}; use --addr ${daemon.address} (or BUILDCACHE_HOST), or connect('${daemon.address}') from the API`);
    const second = await run(['--root', root, 'serve', '--addr', `unix://${join(await tempDir(), 'other.sock')}`]);
    assert.equal(second.code, 3);
    assert.match(second.stderr, /locked by a running daemon at/);
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });

  test('SIGTERM: Hold calls end, calls finish, the socket and the note go, the cache closes', async () => {
    const root = await syntheticRoot(5);
    const daemon = await startDaemon(root);
    assert.ok(await exists(join(root, DAEMON_FILE)));
    const client = connect(daemon.address);
    const hold = await client.hold({ ids: ['synthetic00000004'], newMutable: { description: 'held across shutdown' } });
    daemon.child.kill('SIGTERM');
    assert.deepEqual(await daemon.exited, { code: 0, signal: null });
    await hold.release();
    client.close();
    assert.match(daemon.stderr(), /"shutting down: finishing calls in flight"/);
    assert.match(daemon.stderr(), /"cache closed; daemon stopped"/);
    assert.equal(await exists(daemon.socket), false);
    assert.equal(await exists(join(root, DAEMON_FILE)), false);
    const after = await run(['--root', root, 'du', '--format', 'json']);
    assert.equal(after.code, 0);
    const rows = JSON.parse(after.stdout) as { id: string; mutable: boolean; inUse: boolean }[];
    // The held records were released: none in use; the new mutable one (no retain) went with its handle.
    assert.equal(rows.length, 5);
    assert.ok(rows.every((r) => r.inUse === false && r.mutable === false));
  });
});

describe('buildcache serve: containerd backend', () => {
  test('serves a cache kept in containerd: du, ListWorkers and prune through the daemon', async () => {
    const containerd = containerdAddress();
    const namespace = `serve-${process.pid}`;
    const root = await tempDir();
    {
      const { cache, close } = await openCache({ root, containerd, namespace, logger: pino({ level: 'silent' }) });
      const m = await cache.new(undefined, { description: 'on containerd' });
      const imm = await m.commit();
      await imm.finalize();
      await imm.release();
      await close();
    }
    const daemon = await startDaemon(root, ['--containerd', containerd, '--namespace', namespace]);
    const bk = new BuildkitClient(daemon.address);
    try {
      const { record } = await bk.unary<{ record: { Labels: Record<string, string> }[] }>('ListWorkers', {});
      assert.equal(record[0]!.Labels['dev.buildcache.backend'], 'containerd');
      const du = await run(['--addr', daemon.address, 'du', '--format', 'json']);
      assert.deepEqual((JSON.parse(du.stdout) as { description: string }[]).map((r) => r.description), ['on containerd']);
      const pruned = await run(['--addr', daemon.address, 'prune', '--format', 'json']);
      assert.equal((JSON.parse(pruned.stdout.trim().split('\n').at(-1)!) as { count: number }).count, 1);
    } finally {
      bk.close();
      daemon.child.kill('SIGTERM');
      assert.equal((await daemon.exited).code, 0);
    }
  });
});

describe('buildcache serve: the socket', () => {
  const group = `bctest${process.pid}`;
  after(async () => {
    await exec('groupdel', [group]).catch(() => undefined);
  });

  test('mode 0660, owner root, group --group: a member is served, anyone else refused (exit 4)', async () => {
    await exec('groupadd', ['--system', group]);
    const gid = Number((await exec('getent', ['group', group])).stdout.split(':')[2]);
    const root = await syntheticRoot(2);
    const dir = await tempDir();
    await chmod(dir, 0o755);
    const daemon = await startDaemon(root, ['--group', group], dir);
    const st = await stat(daemon.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.uid, 0);
    assert.equal(st.gid, gid);
    const as = (g: number): string[] => ['setpriv', '--reuid=65534', `--regid=${g}`, '--clear-groups', process.execPath];
    const cli = async (g: number): Promise<{ code: number; stdout: string; stderr: string }> => {
      const [file, ...pre] = as(g) as [string, ...string[]];
      const bin = (await import('./helpers.js')).bin;
      return exec(file, [...pre, bin, '--addr', daemon.address, 'du', '--format', 'json']).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    };
    const member = await cli(gid);
    assert.equal(member.code, 0, member.stderr);
    assert.equal((JSON.parse(member.stdout) as unknown[]).length, 2);
    const other = await cli(65534);
    assert.equal(other.code, 4);
    assert.match(other.stderr, /permission denied on the daemon's socket .*bc\.sock: ask for membership of its group/);
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });

  test('a socket a live server holds is refused; a stale one is replaced; a non-socket is left alone', async () => {
    const dir = await tempDir();
    const live = join(dir, 'bc.sock');
    const server = createServer();
    await new Promise<void>((res) => server.listen(live, res));
    const root = await syntheticRoot(1);
    const refused = await run(['--root', root, 'serve', '--addr', `unix://${live}`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /socket .*bc\.sock is held by a running server; stop it first or choose another --addr/);
    // The cache was not opened: a direct du works.
    assert.equal((await run(['--root', root, 'du'])).code, 0);
    await new Promise<void>((res) => server.close(() => res()));
    // A socket file nobody listens on (a daemon killed with -9).
    await exec('python3', ['-c', 'import os, socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); os.kill(os.getpid(), 9)', live]).catch(() => undefined);
    assert.ok((await stat(live)).isSocket());
    const daemon = await startDaemon(root, [], dir);
    assert.equal((await run(['--addr', daemon.address, 'du'])).code, 0);
    daemon.child.kill('SIGTERM');
    await daemon.exited;
    const file = join(dir, 'file.sock');
    await writeFile(file, 'not a socket');
    const r = await run(['--root', root, 'serve', '--addr', `unix://${file}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /exists and is not a socket/);
    assert.equal(await exists(file), true);
  });
});
