/**
 * BuildKit's control API on the daemon, driven by a gRPC client built from BuildKit's own protos
 * (test/server/fixtures/buildkit): what `buildctl du`, `buildctl prune`, `buildctl debug workers`
 * and `buildctl debug info` send, and the replies parsed against BuildKit's message definitions.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { join } from 'node:path';
import { BuildkitClient, run, startDaemon, syntheticRoot, tempDir, type TestDaemon, type UsageRecord } from './helpers.js';
import { syntheticId, syntheticSize } from '../support/synthetic.js';

const DAY = 24 * 3600_000;
const NS_PER_MS = 1_000_000n;

describe('BuildKit control API (BuildKit protos)', () => {
  let daemon: TestDaemon;
  let bk: BuildkitClient;
  const written = Date.now();
  before(async () => {
    // Records 0–9 (one chain) were last used three days ago, the rest within the last minute.
    const root = await syntheticRoot(30, (i) => (i < 10 ? { lastUsedAt: written - 3 * DAY - i * 1000 } : {}));
    daemon = await startDaemon(root, ['--gc', '--metrics', '127.0.0.1:0']);
    bk = new BuildkitClient(daemon.address);
  });
  after(async () => {
    bk.close();
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });

  const du = async (req: object = {}): Promise<UsageRecord[]> => (await bk.unary<{ record: UsageRecord[] }>('DiskUsage', req)).record;

  test('DiskUsage answers UsageRecords with BuildKit field numbers: CreatedAt always, LastUsedAt when used, Parents not Parent', async () => {
    const records = await du({ filter: [] });
    assert.equal(records.length, 30);
    const r = records.find((x) => x.ID === syntheticId(5))!;
    assert.equal(r.Mutable, false);
    assert.equal(r.InUse, false);
    assert.equal(r.Size, String(syntheticSize(5)));
    assert.deepEqual(r.Parents, [syntheticId(4)]);
    assert.equal(r.Parent, '');
    assert.equal(r.Description, 'synthetic record 5');
    assert.equal(r.RecordType, 'regular');
    assert.equal(r.UsageCount, String(5 % 7));
    assert.ok(r.CreatedAt && Math.abs(Number(r.CreatedAt.seconds) * 1000 - (written - 5000)) < 60_000);
    assert.ok(r.LastUsedAt && Math.abs(Number(r.LastUsedAt.seconds) * 1000 - (written - 3 * DAY - 5000)) < 60_000);
  });

  test('DiskUsage filters as BuildKit does (containerd syntax; ageLimit in nanoseconds)', async () => {
    assert.deepEqual((await du({ filter: [`id==${syntheticId(3)}`] })).map((r) => r.ID), [syntheticId(3)]);
    const two = await du({ filter: [`id==${syntheticId(3)}`, `id==${syntheticId(12)}`] });
    assert.deepEqual(two.map((r) => r.ID).sort(), [syntheticId(3), syntheticId(12)]);
    const old = await du({ ageLimit: String(BigInt(DAY) * NS_PER_MS) });
    assert.deepEqual(old.map((r) => r.ID).sort(), Array.from({ length: 10 }, (_, i) => syntheticId(i)));
  });

  test('bad requests are INVALID_ARGUMENT and change nothing: unknown filter field, negative sizes and durations', async () => {
    await assert.rejects(du({ filter: ['colour==red'] }), (e: { code: number; details: string }) => {
      assert.equal(e.code, status.INVALID_ARGUMENT);
      assert.match(e.details, /unknown filter field "colour"/);
      return true;
    });
    for (const bad of [{ keepDuration: '-1' }, { maxUsedSpace: '-5' }, { reservedSpace: '-1' }, { minFreeSpace: '-1' }, { filter: ['nope~=x'] }]) {
      await assert.rejects(bk.stream('Prune', { all: true, ...bad }), (e: { code: number }) => e.code === status.INVALID_ARGUMENT, JSON.stringify(bad));
    }
    assert.equal((await du()).length, 30);
  });

  test('Prune streams each deleted UsageRecord; keepDuration (ns) keeps recently used records', async () => {
    const seen: string[] = [];
    const deleted = await bk.stream<UsageRecord>('Prune', { keepDuration: String(48n * 3600_000n * NS_PER_MS) }, (r) => seen.push(r.ID));
    assert.deepEqual(deleted.map((r) => r.ID).sort(), Array.from({ length: 10 }, (_, i) => syntheticId(i)));
    assert.ok(deleted.every((r) => r.CreatedAt && Number(r.Size) > 0));
    assert.equal(seen.length, 10);
    assert.equal((await du()).length, 20);
  });

  test('Prune field 4 (reservedSpace, keepBytes before v0.17) is a floor; maxUsedSpace a cap', async () => {
    assert.deepEqual(await bk.stream('Prune', { reservedSpace: String(1 << 30) }), []);
    const before = await du();
    const total = before.reduce((a, r) => a + Number(r.Size), 0);
    const cap = Math.floor(total / 2);
    const deleted = await bk.stream<UsageRecord>('Prune', { maxUsedSpace: String(cap) });
    assert.ok(deleted.length > 0);
    const after = await du();
    assert.equal(after.length, before.length - deleted.length);
    assert.ok(after.reduce((a, r) => a + Number(r.Size), 0) <= cap);
  });

  test('ListWorkers: one worker with the backend, platform, version and GC policy; filters apply', async () => {
    const { record } = await bk.unary<{ record: Record<string, unknown>[] }>('ListWorkers', {});
    assert.equal(record.length, 1);
    const w = record[0] as {
      ID: string; Labels: Record<string, string>; platforms: { OS: string; Architecture: string }[];
      GCPolicy: { keepDuration: string; filters: string[]; all: boolean }[]; BuildkitVersion: { version: string };
    };
    assert.match(w.ID, /^buildcache-/);
    assert.equal(w.Labels['dev.buildcache.backend'], 'embedded');
    assert.equal(w.Labels['org.mobyproject.buildkit.worker.snapshotter'], 'overlayfs');
    assert.equal(w.platforms[0]!.OS, 'linux');
    assert.equal(w.GCPolicy.length, 4);
    assert.equal(w.GCPolicy[0]!.keepDuration, String(48n * 3600_000n * NS_PER_MS));
    assert.deepEqual(w.GCPolicy[0]!.filters, ['type==source.local', 'type==exec.cachemount', 'type==source.git.checkout']);
    assert.equal(w.GCPolicy[3]!.all, true);
    assert.equal(w.BuildkitVersion.version, '0.1.0');
    assert.equal((await bk.unary<{ record: unknown[] }>('ListWorkers', { filter: [`id==${w.ID}`] })).record.length, 1);
    assert.equal((await bk.unary<{ record: unknown[] }>('ListWorkers', { filter: ['id==other'] })).record.length, 0);
  });

  test('--metrics serves the calls by method and status code on loopback (HTTP /metrics)', async () => {
    await du();
    const address = /"metrics":"(127\.0\.0\.1:\d+)"/.exec(daemon.stderr())![1]!;
    const text = await (await fetch(`http://${address}/metrics`)).text();
    assert.match(text, /buildcache_server_calls_total\{method="Control\/DiskUsage",code="OK"\} [1-9]/);
    assert.match(text, /buildcache_server_calls_total\{method="Control\/DiskUsage",code="INVALID_ARGUMENT"\} [1-9]/);
    assert.match(text, /buildcache_server_call_duration_seconds_count\{method="Control\/Prune"\} [1-9]/);
    const refused = await run(['--root', await tempDir(), 'serve', '--addr', `unix://${join(await tempDir(), 's.sock')}`, '--metrics', '0.0.0.0:9464']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /metrics address "0\.0\.0\.0:9464" must be a loopback HOST:PORT/);
  });

  test('Info answers the version; methods a cache does not own answer UNIMPLEMENTED saying so', async () => {
    const info = await bk.unary<{ buildkitVersion: { package: string; version: string } }>('Info', {});
    assert.equal(info.buildkitVersion.version, '0.1.0');
    assert.match(info.buildkitVersion.package, /buildcache/);
    await assert.rejects(bk.unary('Solve', { Ref: 'x' }), (e: { code: number; details: string }) => {
      assert.equal(e.code, status.UNIMPLEMENTED);
      assert.match(e.details, /Control\/Solve is not implemented: buildcache serves the cache's part/);
      return true;
    });
    await assert.rejects(bk.stream('Status', { Ref: 'x' }), (e: { code: number }) => e.code === status.UNIMPLEMENTED);
    await assert.rejects(bk.stream('ListenBuildHistory', {}), (e: { code: number }) => e.code === status.UNIMPLEMENTED);
  });
});
