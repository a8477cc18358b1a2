/**
 * kill -9 at the kill points of a build step (every other backend call and metadata commit, before
 * and after, up to the commit of its cache key): the next frontend open leaves either no result of the step or a complete one — a record
 * holding its cache key — never a mutable record, an unkeyed result or a lease no record owns; and
 * the next build gives the same image.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomInt } from 'node:crypto';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { mountPointsUnder } from '@buildcache/snapshot';
import { Frontend } from '@buildcache/frontend';

const execFileP = promisify(execFile);
/** Every other kill point is tried (which ones: the seed's parity, printed; `BUILDCACHE_SEED=<seed>` replays). */
const SEED = process.env.BUILDCACHE_SEED ? Number(process.env.BUILDCACHE_SEED) : randomInt(2 ** 31);
const worker = join(dirname(fileURLToPath(import.meta.url)), 'step-crash-worker.js');

let tmp: string;
let context: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-step-crash-'));
  context = join(tmp, 'ctx');
  await mkdir(context);
  await writeFile(join(context, 'Dockerfile'), 'FROM scratch\nCOPY a.txt /a.txt\n');
  await writeFile(join(context, 'a.txt'), 'step result\n');
});
after(async () => {
  for (const p of await mountPointsUnder(tmp)) await execFileP('umount', ['-l', p]).catch(() => undefined);
  await rm(tmp, { recursive: true, force: true });
});

/** A bound on one worker run (one small build), so a hung worker fails the test (SIGTERM, not a kill point) instead of outliving it. */
const WORKER_TIMEOUT_MS = 120_000;

/** Runs the worker on `root` (to its end, or killed at `killAt`); resolves with what it printed. */
async function runWorker(root: string, killAt?: number): Promise<string> {
  const cfg = JSON.stringify({ root, context, ...(killAt !== undefined ? { killAt } : {}) });
  return execFileP(process.execPath, [worker, cfg], { timeout: WORKER_TIMEOUT_MS }).then(
    (r) => r.stdout,
    (err: { signal?: string; stdout?: string; stderr?: string }) => {
      if (err.signal === 'SIGKILL') return err.stdout ?? '';
      throw new Error(`worker failed (${err.signal ?? 'exit'}): ${err.stderr}`);
    },
  );
}

/** After a kill: opens the root (the frontend drops what the killed step left), checks it, builds again. Returns whether a result was kept. */
async function checkAndRebuild(root: string, digest: string): Promise<boolean> {
  const silent = pino({ level: 'silent' });
  const { cache, backend, close } = await openCache({ root, logger: silent });
  try {
    const frontend = await Frontend.open({ cache, content: backend.content, root: join(root, 'frontend'), logger: silent });
    const records: string[] = [];
    for await (const u of cache.diskUsage()) {
      assert.equal(u.mutable, false, `record ${u.id} (${u.description}) is a mutable record the killed step left`);
      assert.ok((await cache.keys.keysOf(u.id)).length > 0, `record ${u.id} (${u.description}) holds no cache key`);
      records.push(u.id);
    }
    for (const lease of await backend.leases.list()) {
      assert.ok(records.includes(lease.id.replace(/-(view|variants)$/, '')), `lease ${lease.id} belongs to no record`);
    }
    const again = await frontend.build({ context });
    assert.equal(again.digest, digest, 'the build after the kill gives the same image');
    assert.deepEqual(again.steps.map((s) => s.cached), [records.length > 0]);
    return records.length > 0;
  } finally {
    await close();
  }
}

test('kill -9 at the kill points of a step: no result or a complete one, and the next build is right', async (t) => {
  t.diagnostic(`seed ${SEED}`);
  const dry = await runWorker(join(tmp, 'dry'));
  const events = Number(/^events (\d+)$/m.exec(dry)?.[1]);
  const digest = /^digest (\S+)$/m.exec(dry)?.[1];
  assert.ok(events > 0 && digest, `the worker reports its kill points and image: ${dry}`);
  let kept = 0;
  for (let k = SEED % 2; k < events; k += 2) {
    const root = join(tmp, `kill-${k}`);
    assert.equal(await runWorker(root, k), '', `killed at point ${k} before it printed anything`);
    try {
      if (await checkAndRebuild(root, digest)) kept++;
    } catch (err) {
      throw new Error(`killed at point ${k} of ${events}: ${String(err)}`, { cause: err });
    }
    await rm(root, { recursive: true, force: true });
  }
  const tried = Math.ceil((events - (SEED % 2)) / 2);
  assert.ok(kept > 0 && kept < tried, `some kills kept the result (${kept} of ${tried}), earlier ones did not`);
});

test('an old-format marker (the ID of a killed step\'s mutable record, from before the tokens) drops that record and its committed twin at open', async () => {
  const root = join(tmp, 'old-marker');
  const silent = pino({ level: 'silent' });
  const markers = join(root, 'frontend', 'steps');
  // A build killed after committing its step, before keying it: the mutable record, its unkeyed twin, the marker naming the record.
  const first = await openCache({ root, logger: silent });
  const mutable = await first.cache.new(undefined, { description: 'COPY a.txt /a.txt' });
  await mkdir(markers, { recursive: true });
  await writeFile(join(markers, mutable.id), '');
  await mutable.commit();
  await first.close();
  const { cache, backend, close } = await openCache({ root, logger: silent });
  try {
    await Frontend.open({ cache, content: backend.content, root: join(root, 'frontend'), logger: silent });
    const left: string[] = [];
    for await (const u of cache.diskUsage()) left.push(`${u.id} (${u.description}, mutable ${u.mutable})`);
    assert.deepEqual(left, [], 'no record of the killed step is left');
    assert.deepEqual(await backend.leases.list(), [], 'no lease of the killed step is left');
    assert.deepEqual(await readdir(markers), [], 'the marker is gone');
  } finally {
    await close();
  }
});
