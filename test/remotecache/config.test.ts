/**
 * The cache description (BuildKit's cacheconfig.v0): written deterministically, read back into the
 * same result keys and blob chains, and refused — with a reason — when it is malformed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { resultKey } from '@buildcache/cache';
import { CacheConfigError, marshalConfig, parseConfig, type ExportStep } from '@buildcache/remotecache';

const d = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const bytes = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

/** A linear build: COPY (checksum input) → RUN → COPY (parent + checksum) → RUN. */
function chain(withResults: 'all' | 'last'): ExportStep[] {
  const steps: ExportStep[] = [];
  let parent: string | undefined;
  const blobs: string[] = [];
  for (const [i, op] of ['copy a', 'run x', 'copy b', 'run y'].entries()) {
    const inputs = [...(parent ? [parent] : []), ...(op.startsWith('copy') ? [d(`checksum ${op}`)] : [])];
    blobs.push(d(`blob ${i}`));
    const last = i === 3;
    steps.push({ opKey: d(op), inputs, ...(withResults === 'all' || last ? { blobs: [...blobs], createdAt: '2026-12-03T00:00:00Z' } : {}) });
    parent = resultKey(d(op), inputs);
  }
  return steps;
}

test('a description reads back every exported result under its result key, with its blob chain', () => {
  const steps = chain('all');
  const entries = parseConfig(marshalConfig(steps));
  assert.equal(entries.length, 4);
  for (const s of steps) {
    const e = entries.find((x) => x.key === resultKey(s.opKey, s.inputs));
    assert.ok(e, `result of ${s.opKey}`);
    assert.deepEqual(e.blobs, s.blobs);
  }
});

test('mode=min: only the final step has a result, but its key is still reachable through the links', () => {
  const steps = chain('last');
  const entries = parseConfig(marshalConfig(steps));
  assert.equal(entries.length, 1);
  const last = steps.at(-1)!;
  assert.equal(entries[0]!.key, resultKey(last.opKey, last.inputs));
  assert.equal(entries[0]!.blobs.length, 4);
});

test('a step without inputs (RUN on scratch) keeps its key', () => {
  const steps: ExportStep[] = [{ opKey: d('run on scratch'), inputs: [], blobs: [d('b')] }];
  assert.equal(parseConfig(marshalConfig(steps))[0]!.key, resultKey(d('run on scratch'), []));
});

test('the same graph gives the same bytes whatever the step order; shared layers are written once', () => {
  const steps = chain('all');
  const a = marshalConfig(steps);
  const b = marshalConfig([...steps].reverse());
  assert.deepEqual(a, b);
  const cfg = JSON.parse(a.toString()) as { layers: unknown[]; records: unknown[] };
  assert.equal(cfg.layers.length, 4, 'four distinct chain prefixes');
  assert.equal(cfg.records.length, 6, 'four steps and two checksum roots');
});

test('BuildKit spellings: an omitted parent means layer 0, and the newest result wins', () => {
  const [b0, b1, b2] = [d('0'), d('1'), d('2')];
  const entries = parseConfig(bytes({
    layers: [{ blob: b0, parent: -1 }, { blob: b1 }, { blob: b2, parent: -1 }],
    records: [{ digest: d('k'), layers: [{ layer: 1, createdAt: '2020-01-01T00:00:00Z' }, { layer: 2, createdAt: '2021-01-01T00:00:00Z' }] }],
  }));
  assert.deepEqual(entries[0]!.blobs, [b2]);
  const older = parseConfig(bytes({ layers: [{ blob: b0, parent: -1 }, { blob: b1 }], records: [{ digest: d('k'), layers: [{ layer: 1, createdAt: '' }] }] }));
  assert.deepEqual(older[0]!.blobs, [b0, b1]);
});

test('malformed descriptions are refused with the reason', () => {
  const ok = d('x');
  const cases: [string, Buffer, RegExp][] = [
    ['not JSON', Buffer.from('{"layers": ['), /not JSON/],
    ['not an object', bytes([1, 2]), /not a JSON object/],
    ['bad blob digest', bytes({ layers: [{ blob: 'md5:1', parent: -1 }] }), /layer 0.*sha256/],
    ['parent out of range', bytes({ layers: [{ blob: ok, parent: 7 }] }), /parent 7/],
    ['result names a missing layer', bytes({ layers: [], records: [{ digest: ok, layers: [{ layer: 0 }] }] }), /not in "layers"/],
    ['empty input list', bytes({ records: [{ digest: ok, inputs: [[]] }] }), /input 0 has no link/],
    ['link out of range', bytes({ records: [{ digest: ok, inputs: [[{ selector: '', link: 3 }]] }] }), /not there/],
    ['loop in links', bytes({ records: [{ digest: ok, inputs: [[{ selector: '', link: 1 }]] }, { digest: d('y'), inputs: [[{ selector: '', link: 0 }]] }] }), /loop/],
    ['loop in layer parents', bytes({ layers: [{ blob: ok, parent: 1 }, { blob: d('y'), parent: 0 }], records: [{ digest: ok, layers: [{ layer: 0 }] }] }), /loop/],
    ['too big', Buffer.alloc((1 << 20) + 1, 32), /more than/],
  ];
  for (const [what, input, message] of cases) {
    assert.throws(() => parseConfig(input), (err: unknown) => err instanceof CacheConfigError && message.test(err.message), what);
  }
});
