/**
 * Output that survives pipes and signals and reads like buildctl's and buildx's (issue 11, items
 * 4-6 and 8): a closed stdout, SIGINT/SIGTERM mid-prune, streamed prune JSON, sizes and ages.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { collect, lines, run, spawnCli, syntheticRoot } from './helpers.js';

/** How many records `du` shows under `root`. */
async function count(root: string): Promise<number> {
  const r = await run(['--root', root, 'du', '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as unknown[]).length;
}

/** Runs the binary and closes its stdout after the first chunk, as `| head -1` does. */
async function closeEarly(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawnCli(args);
  child.stdin?.end();
  child.stdout?.once('data', () => child.stdout?.destroy());
  const r = await collect(child);
  return { code: r.code, stderr: r.stderr };
}

/** Many records, so that output outgrows a pipe and a prune takes many batches. */
const MANY = 5000;

describe('a closed stdout ends the command quietly', () => {
  test('du | head: exit 0, nothing on stderr, in table and JSON format', async () => {
    const root = await syntheticRoot(MANY);
    for (const format of ['table', 'json']) {
      const r = await closeEarly(['--root', root, 'du', '--format', format]);
      assert.equal(r.stderr, '', `${format}: no stack trace`);
      assert.equal(r.code, 0, format);
    }
  });

  test('prune | head: stops after the current batch, exit 0, nothing on stderr, the cache still opens', async () => {
    const root = await syntheticRoot(MANY);
    const r = await closeEarly(['--root', root, 'prune', '--force']);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const left = await count(root);
    assert.ok(left > 0 && left < MANY, `stopped part way: ${left} of ${MANY} left`);
  });
});

describe('signals during prune', () => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    test(`${signal}: finishes the batch, prints valid JSON of what was deleted, exit ${code}`, async () => {
      const root = await syntheticRoot(MANY);
      const child = spawnCli(['--root', root, 'prune', '--format', 'json']);
      child.stdin?.end();
      // The first streamed record proves the prune is under way (and that JSON streams).
      child.stdout?.once('data', () => child.kill(signal));
      const r = await collect(child);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stderr, '');
      const objects = lines(r.stdout).map((l) => JSON.parse(l) as { id?: string; count?: number; complete?: boolean; total?: number; size?: number });
      const records = objects.slice(0, -1);
      const last = objects.at(-1)!;
      assert.ok(records.length > 0 && records.every((o) => typeof o.id === 'string'), 'one object per deleted record');
      assert.equal(last.complete, false);
      assert.equal(last.count, records.length);
      assert.equal(last.total, records.reduce((a, o) => a + o.size!, 0));
      assert.equal(await count(root), MANY - records.length, 'exactly the printed records are gone');
    });
  }
});

describe('prune --format json and du --format json', () => {
  test('prune streams one object per line, then a totals object; du stays an array', async () => {
    const root = await syntheticRoot(20);
    const du = await run(['--root', root, 'du', '--format', 'json']);
    assert.ok(Array.isArray(JSON.parse(du.stdout)));
    const r = await run(['--root', root, 'prune', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(out.length, 21);
    assert.ok(out.slice(0, 20).every((o) => typeof o.id === 'string' && typeof o.size === 'number'));
    assert.deepEqual(
      { ...out[20], total: 0 },
      { dryRun: false, count: 20, total: 0, complete: true },
    );
  });
});

describe('sizes and ages as buildctl and buildx print them', () => {
  test('292B, 0B, 14.77MB; About a minute ago, 47 hours ago, 2 weeks ago; a docker system df summary line', async () => {
    const now = Date.now();
    const shapes = [
      { size: 292, lastUsedAt: now - 61_000 },
      { size: 0, lastUsedAt: now - 47 * 3600_000 },
      { size: 14_770_000, lastUsedAt: now - 14 * 86400_000 },
    ];
    const root = await syntheticRoot(3, (i) => shapes[i]!);
    const r = await run(['--root', root, 'du']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^synthetic00000000\s+true\s+292B\s+About a minute ago$/m);
    assert.match(r.stdout, /^synthetic00000001\s+true\s+0B\s+47 hours ago$/m);
    assert.match(r.stdout, /^synthetic00000002\s+true\s+14\.77MB\s+2 weeks ago$/m);
    assert.match(r.stdout, /^Total:\s+14\.77MB$/m);
    assert.match(r.stdout, /^3 records, 0 in use, 14\.77MB of 14\.77MB reclaimable \(100%\)$/m);
    const v = await run(['--root', root, 'du', '-v', '-f', 'id==synthetic00000000']);
    assert.match(v.stdout, /^Size:\s+292B$/m);
    assert.match(v.stdout, /^Last used:\s+About a minute ago$/m);
  });
});
