/**
 * The flags a buildctl or buildx user types (issue 11, items 1-3, 9, 12, 13): empty values, size
 * units, buildx's spellings, one-line usage errors, and the global flags' rules.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { run, lines, syntheticRoot, tempDir } from './helpers.js';
import { syntheticId } from '../support/synthetic.js';

const RECORDS = 20;

/** IDs of the records `du` shows under `root`. */
async function ids(root: string): Promise<string[]> {
  const r = await run(['--root', root, 'du', '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { id: string }[]).map((u) => u.id).sort();
}

/** The records a `prune --dry-run --format json` with `flags` would delete. */
async function wouldDelete(root: string, flags: string[]): Promise<string[]> {
  const r = await run(['--root', root, 'prune', '--dry-run', '--format', 'json', ...flags]);
  assert.equal(r.code, 0, `${flags.join(' ')}: ${r.stderr}`);
  return lines(r.stdout)
    .map((l) => JSON.parse(l) as { id?: string })
    .flatMap((o) => (o.id ? [o.id] : []))
    .sort();
}

/** One line on stderr, exit 2, nothing on stdout. */
function assertUsage(r: { code: number | null; stdout: string; stderr: string }, re: RegExp, what: string): void {
  assert.equal(r.code, 2, `${what}: ${r.stderr}`);
  assert.match(r.stderr, re, what);
  assert.equal(lines(r.stderr).length, 1, `${what}: one line: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

describe('never delete more than asked', () => {
  test('an empty value of a space or duration flag is a usage error and deletes nothing', async () => {
    const root = await syntheticRoot(RECORDS);
    for (const flag of ['--keep-storage', '--keep-duration', '--keep-storage-min', '--free-storage', '--max-used-space', '--filter']) {
      for (const args of [[flag, ''], [`${flag}=`]]) {
        const r = await run(['--root', root, 'prune', '--force', ...args]);
        assertUsage(r, new RegExp(`${flag}.*empty value`), args.join(' '));
      }
    }
    assert.equal((await ids(root)).length, RECORDS, 'nothing was deleted');
  });

  test('a bare number is megabytes as in buildctl; suffixes are 1024-based as in docker', async () => {
    const root = await syntheticRoot(RECORDS);
    const total = (await ids(root)).length;
    assert.deepEqual(await wouldDelete(root, ['--keep-storage', '10000']), [], '10000 MB = 10 GB keeps all 20 records of ~4 kB');
    const r = await run(['--root', root, 'prune', '--force', '--keep-storage', '10000']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await ids(root)).length, total, 'a buildctl user\'s --keep-storage 10000 deleted nothing');

    // 0.04 (MB) = 40,000 bytes; 40KB = 40KiB = 40kb = 40,960 bytes: the cache is pruned down to at most that.
    const usage = async (): Promise<number> => {
      const out = JSON.parse((await run(['--root', root, 'du', '--format', 'json'])).stdout) as { size: number }[];
      return out.reduce((a, u) => a + u.size, 0);
    };
    const before = await usage();
    for (const [text, bytes] of [['0.04', 40_000], ['40KB', 40_960], ['40KiB', 40_960], ['40kb', 40_960], ['40 k', 40_960]] as const) {
      const removed = await wouldDelete(root, ['--keep-storage', text]);
      const sizes = JSON.parse((await run(['--root', root, 'du', '--format', 'json'])).stdout) as { id: string; size: number }[];
      const freed = sizes.filter((u) => removed.includes(u.id)).reduce((a, u) => a + u.size, 0);
      assert.ok(before - freed <= bytes, `${text}: keeps at most ${bytes} bytes (kept ${before - freed})`);
      assert.ok(before - freed > bytes - 4200, `${text}: keeps close to ${bytes} bytes (kept ${before - freed})`);
    }
    assertUsage(await run(['--root', root, 'prune', '--keep-storage', '10XB']), /--keep-storage: invalid size "10XB"/, '10XB');
  });

  test('--help states the size rule', async () => {
    const help = await run(['--help']);
    assert.match(help.stdout, /bare number is megabytes as in buildctl/);
    assert.match(help.stdout, /1024-based/);
  });
});

describe("buildx's spellings", () => {
  test('--max-used-space, --reserved-space, --min-free-space act as buildctl\'s flags; a bare number is refused', async () => {
    const root = await syntheticRoot(RECORDS);
    const pairs: [string[], string[]][] = [
      [['--max-used-space', '40KiB'], ['--keep-storage', '40KiB']],
      [['--keep-storage', '40KiB', '--reserved-space', '60KiB'], ['--keep-storage', '40KiB', '--keep-storage-min', '60KiB']],
      [['--min-free-space', '1PB'], ['--free-storage', '1PB']],
    ];
    for (const [buildx, buildctl] of pairs) {
      const a = await wouldDelete(root, buildx);
      assert.ok(a.length > 0, `${buildx.join(' ')} selects something`);
      assert.deepEqual(a, await wouldDelete(root, buildctl), `${buildx.join(' ')} = ${buildctl.join(' ')}`);
    }
    assert.notDeepEqual(await wouldDelete(root, ['--keep-storage', '40KiB']), await wouldDelete(root, pairs[1]![0]), 'the reserve counts');
    assertUsage(await run(['--root', root, 'prune', '--max-used-space', '10000']), /--max-used-space: "10000" has no unit/, 'bare number');
    assertUsage(
      await run(['--root', root, 'prune', '--keep-storage', '1GB', '--max-used-space', '1GB']),
      /--keep-storage and --max-used-space mean the same/,
      'both spellings',
    );
    assert.equal((await ids(root)).length, RECORDS);
  });

  test('--filter until=D (and unused-for=D) is --keep-duration D; -a is --all', async () => {
    const now = Date.now();
    // Records 0-9 (one chain) were used just now, 10-19 two hours ago; 20-29 are internal.
    const root = await syntheticRoot(30, (i) => ({
      lastUsedAt: i < 10 ? now : now - 2 * 3600_000,
      ...(i >= 20 ? { recordType: 'internal' } : {}),
    }));
    const old = Array.from({ length: 10 }, (_, i) => syntheticId(10 + i)).sort();
    assert.deepEqual(await wouldDelete(root, ['--keep-duration', '1h']), old);
    assert.deepEqual(await wouldDelete(root, ['--filter', 'until=1h']), old);
    assert.deepEqual(await wouldDelete(root, ['-f', 'unused-for=1h']), old);
    const internal = Array.from({ length: 10 }, (_, i) => syntheticId(20 + i));
    assert.deepEqual(await wouldDelete(root, ['-a', '-f', 'until=1h']), [...old, ...internal].sort());
    assert.deepEqual(await wouldDelete(root, ['-a', '-f', 'until=1h']), await wouldDelete(root, ['--all', '--keep-duration', '1h']));
    assertUsage(await run(['--root', root, 'prune', '-f', 'until=1h', '--keep-duration', '2h']), /mean the same/, 'until twice');
    assertUsage(await run(['--root', root, 'du', '-f', 'until=1h']), /until= filter applies to prune only/, 'du until');
  });
});

describe('usage errors are one line', () => {
  test('--log-level verbose names the valid levels', async () => {
    const r = await run(['--log-level', 'verbose', 'du', '--root', await tempDir()]);
    assertUsage(r, /--log-level: unknown level "verbose"; use one of fatal, error, warn, info, debug, trace, silent/, 'log level');
  });

  test("node's parseArgs messages are replaced: unknown option, value that looks like a flag, missing value", async () => {
    const root = await tempDir();
    const cases: [string[], RegExp][] = [
      [['du', '--colour'], /^buildcache: unknown flag --colour; see buildcache --help$/m],
      [['prune', '--keep-storage', '--dry-run'], /--keep-storage needs a value, but the next argument "--dry-run" looks like a flag/],
      [['prune', '--keep-storage'], /--keep-storage needs a value$/m],
      [['prune', '-f'], /-f \(--filter\) needs a value \(-f is --filter, as in buildctl; buildx's -f is --force here\)/],
      [['du', '--verbose=yes'], /--verbose takes no value/],
    ];
    for (const [args, re] of cases) assertUsage(await run(['--root', root, ...args]), re, args.join(' '));
  });

  test('--namespace or --timeout without --containerd is a usage error', async () => {
    const root = await tempDir();
    assertUsage(await run(['--root', root, '--namespace', 'x', 'du']), /--namespace applies only with --containerd/, 'namespace');
    assertUsage(await run(['--root', root, '--timeout', '5s', 'du']), /--timeout applies only with --containerd/, 'timeout');
  });

  test('push --addr checks --compression and reaches the daemon without loading the image store, layer store, lazy layers, registry client or frontend', async () => {
    const dir = await tempDir();
    const addr = `unix://${join(dir, 'none.sock')}`;
    const preload = fileURLToPath(new URL('../support/module-log.js', import.meta.url));
    const heavy = /\/packages\/(images|layers|lazy|registry|frontend)\/|\/packages\/server\/dist\/src\/(workspace|operations)\.js$/;
    const cases: [string[], number, RegExp][] = [
      [['push', '--compression', 'bogus', 'app:1', 'localhost:5000/app:1'], 2, /--compression: unknown "bogus"; use one of gzip, zstd, uncompressed, estargz/],
      // No daemon listens at addr: exit 3 shows the client got as far as connecting.
      [['push', '--compression', 'zstd', 'app:1', 'localhost:5000/app:1'], 3, /no buildcache daemon answers at/],
    ];
    for (const [i, [args, code, stderr]] of cases.entries()) {
      const log = join(dir, `modules-${i}`);
      const r = await run(['--addr', addr, ...args], { nodeArgs: ['--import', preload], env: { BUILDCACHE_TEST_MODULE_LOG: log } });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, stderr);
      const loaded = lines(await readFile(log, 'utf8'));
      assert.ok(loaded.some((u) => u.endsWith('/packages/cli/dist/src/push.js')), 'the log records the modules the CLI loads');
      assert.deepEqual([...new Set(loaded.filter((u) => heavy.test(u)))], [], args.join(' '));
    }
  });

  test('buildcache with no arguments prints usage on stderr and exits 2', async () => {
    const r = await run([]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^Usage: buildcache/);
  });

  test('a relative XDG_DATA_HOME is ignored (XDG spec): the cache goes under $HOME/.local/share', async () => {
    const cwd = await tempDir();
    const home = await tempDir();
    const r = await run(['du'], { env: { XDG_DATA_HOME: 'relative/data', HOME: home }, cwd });
    assert.equal(r.code, 0, r.stderr);
    await assert.rejects(stat(join(cwd, 'relative')), 'nothing created under the relative path');
    assert.ok((await stat(join(home, '.local', 'share', 'buildcache', 'metadata'))).isDirectory());
    assert.notEqual(home, homedir());
  });
});
