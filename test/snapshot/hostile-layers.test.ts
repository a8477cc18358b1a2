/**
 * A corpus of malicious layers applied on every backend. For EVERY backend: nothing outside the
 * snapshot changes (a sentinel dir in /tmp, /etc/passwd, no new file named with the run's token in
 * /, /tmp or anywhere under the backend's root except the snapshot itself). The embedded applier
 * must refuse each with a typed error naming the entry and no host path; containerd re-roots or
 * fails with UNKNOWN (KNOWN_DIFFERENCES), and what it did is printed as a diagnostic. Device nodes
 * and fifos are created inside the snapshot by every backend.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrFailedPrecondition, ErrUnknown } from '@buildcache/errdefs';
import type { BuildcacheError } from '@buildcache/errdefs';
import { MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP } from '@buildcache/snapshot';
import type { Mount } from '@buildcache/snapshot';
import { containerdAddress } from '../harness/containerd.js';
import { KNOWN_DIFFERENCES, backendKinds, committed, expectedFor, isGone, openFixture, ownDir, rejectsWith, sha256, writeBlob } from './helpers.js';
import type { ErrorClass, Fixture } from './helpers.js';
import { paxData, tarArchive } from './tarwriter.js';
import type { RawEntry } from './tarwriter.js';
import { listTree, pseudoRandom } from './trees.js';

const T = randomBytes(4).toString('hex');
const SENT = `/tmp/bc-sentinel-${T}`;
const UP = '../'.repeat(12);

/** What every backend gives for a kind of harm (KNOWN_DIFFERENCES rows, or the same everywhere). */
const EXPECTED = {
  unsafe: KNOWN_DIFFERENCES.hostileEntry,
  corrupt: KNOWN_DIFFERENCES.corruptLayer,
  unholdable: KNOWN_DIFFERENCES.unholdableEntry,
  headerChain: KNOWN_DIFFERENCES.extendedHeaderChain,
  special: { default: 'created' },
} as const;

/** One hostile layer: its bytes, media type, the entry that must be named, and its class of harm. */
interface Case {
  readonly name: string;
  readonly harm: keyof typeof EXPECTED;
  readonly entry: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

const first: RawEntry = { name: `first-${T}`, type: '0', data: 'harmless' };
const tarCase = (name: string, harm: Case['harm'], entry: string, entries: RawEntry[]): Case => ({
  name, harm, entry, mediaType: MEDIA_TYPE_LAYER, bytes: tarArchive([first, ...entries]),
});
const goodTar = tarArchive([first, { name: `big-${T}`, type: '0', data: pseudoRandom(300_000, 9) }]);

const CASES: readonly Case[] = [
  tarCase('../x', 'unsafe', `../evil-${T}-1`, [{ name: `../evil-${T}-1`, type: '0', data: 'x' }]),
  tarCase('a/../../x', 'unsafe', `a/../../evil-${T}-2`, [{ name: `a/../../evil-${T}-2`, type: '0', data: 'x' }]),
  tarCase('deep ../ into the sentinel', 'unsafe', `${UP}tmp/bc-sentinel-${T}/evil-${T}-3`, [
    { name: `${UP}tmp/bc-sentinel-${T}/evil-${T}-3`, type: '0', data: 'x' },
  ]),
  tarCase('absolute /x', 'unsafe', `${SENT}/evil-${T}-4`, [{ name: `${SENT}/evil-${T}-4`, type: '0', data: 'x' }]),
  tarCase('symlink to /tmp sentinel, then a file through it', 'unsafe', `lnk-${T}/evil-${T}-5`, [
    { name: `lnk-${T}`, type: '2', linkname: SENT },
    { name: `lnk-${T}/evil-${T}-5`, type: '0', data: 'x' },
  ]),
  tarCase('symlink ../../.., then a file through it', 'unsafe', `up-${T}/evil-${T}-6`, [
    { name: `up-${T}`, type: '2', linkname: '../../..' },
    { name: `up-${T}/evil-${T}-6`, type: '0', data: 'x' },
  ]),
  tarCase('deep relative symlink to the sentinel, then a file', 'unsafe', `up2-${T}/evil-${T}-7`, [
    { name: `up2-${T}`, type: '2', linkname: `${UP}tmp/bc-sentinel-${T}` },
    { name: `up2-${T}/evil-${T}-7`, type: '0', data: 'x' },
  ]),
  tarCase('hard link to /etc/passwd, then written', 'unsafe', `pw-${T}`, [
    { name: `pw-${T}`, type: '1', linkname: '/etc/passwd' },
    { name: `pw-${T}`, type: '0', data: 'pwned' },
  ]),
  tarCase('hard link to ../ (the sentinel file), then written', 'unsafe', `hl-${T}`, [
    { name: `hl-${T}`, type: '1', linkname: `${UP}tmp/bc-sentinel-${T}/keep` },
    { name: `hl-${T}`, type: '0', data: 'pwned' },
  ]),
  tarCase('whiteout of ..', 'unsafe', '.wh...', [{ name: '.wh...', type: '0', data: '' }]),
  tarCase('whiteout reaching outside', 'unsafe', `${UP}tmp/bc-sentinel-${T}/.wh.keep`, [
    { name: `${UP}tmp/bc-sentinel-${T}/.wh.keep`, type: '0', data: '' },
  ]),
  tarCase('char device', 'special', `dev-${T}`, [{ name: `dev-${T}`, type: '3', devmajor: 1, devminor: 3, mode: 0o666 }]),
  tarCase('fifo', 'special', `fifo-${T}`, [{ name: `fifo-${T}`, type: '6', mode: 0o644 }]),
  tarCase('a name component over 255 bytes', 'unholdable', `long-${T}/${'n'.repeat(300)}`, [
    { name: `long-${T}`, type: '0', data: 'x', pax: { path: `long-${T}/${'n'.repeat(300)}` } },
  ]),
  tarCase('64 PAX headers of 32 KiB chained before one entry', 'headerChain', `chain-${T}`, [
    ...Array.from({ length: 64 }, (_, i): RawEntry => ({ name: `chain-${T}`, type: 'x', data: paxData({ [`BUILDCACHE.pad${i}`]: 'p'.repeat(32 << 10) }) })),
    { name: `chain-${T}`, type: '0', data: 'x' },
  ]),
  { name: 'truncated gzip', harm: 'corrupt', entry: `big-${T}`, mediaType: MEDIA_TYPE_LAYER_GZIP, bytes: gzipSync(goodTar).subarray(0, 20_000) },
  { name: 'gzip bytes labelled as plain tar', harm: 'corrupt', entry: '', mediaType: MEDIA_TYPE_LAYER, bytes: gzipSync(goodTar) },
];

/** What must not change outside the snapshot. */
interface Watched {
  sentinel: string;
  passwd: string;
}

async function watched(): Promise<Watched> {
  const names = (await readdir(SENT)).sort();
  const keep = await stat(join(SENT, 'keep'));
  const pw = await stat('/etc/passwd');
  return {
    sentinel: JSON.stringify({ names, keep: await readFile(join(SENT, 'keep'), 'utf8'), nlink: keep.nlink, size: keep.size }),
    passwd: JSON.stringify({ text: await readFile('/etc/passwd', 'utf8'), nlink: pw.nlink, mtime: pw.mtimeMs, size: pw.size }),
  };
}

/** Paths under `dir` (not following symlinks) whose name contains the run's token. */
async function tokenPaths(dir: string, depth: number): Promise<string[]> {
  const out: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (n.includes(T) && !p.startsWith(SENT)) out.push(p);
    if (depth > 0 && p !== SENT && (await lstat(p).then((s) => s.isDirectory(), () => false))) out.push(...(await tokenPaths(p, depth - 1)));
  }
  return out;
}

/** Token-named paths outside `allowed` in /, /tmp, and below the backend's state. */
async function escapes(f: Fixture, allowed: string): Promise<string[]> {
  const roots: Array<[string, number]> = [['/', 0], ['/tmp', 0], [f.tb.dir, 64]];
  if (f.family === 'containerd') roots.push([dirname(containerdAddress()), 64]);
  const found = new Set<string>();
  for (const [root, depth] of roots) for (const p of await tokenPaths(root, depth)) found.add(p);
  return [...found].filter((p) => p !== allowed && !p.startsWith(allowed + '/')).sort();
}

before(async () => {
  await mkdir(SENT, { recursive: true });
  await writeFile(join(SENT, 'keep'), 'sentinel');
});

after(async () => {
  await rm(SENT, { recursive: true, force: true });
});

for (const kind of backendKinds()) {
  describe(`hostile layers [${kind.name}]`, () => {
    let f: Fixture;
    beforeEach(async () => {
      f = await openFixture(kind);
    });
    afterEach(async () => {
      await f.close();
    });

    for (const c of CASES) {
      it(`${c.name}: nothing outside the snapshot changes; ${expectation(kind.name, c)}`, async (t) => {
        const b = f.backend;
        const base = f.name('base');
        await committed(b, base, undefined, f.leased);
        const key = f.name('target');
        const mounts: Mount[] = await b.snapshotter.prepare(key, base, f.leased);
        const own = ownDir(mounts);
        const digest = await writeBlob(b, c.bytes, f.leased);
        const before = await watched();
        let outcome: unknown;
        try {
          outcome = await b.applier.apply({ mediaType: c.mediaType, digest, size: c.bytes.length }, mounts);
        } catch (err) {
          outcome = err;
        }
        assert.deepEqual(await watched(), before, 'sentinel dir and /etc/passwd unchanged');
        assert.deepEqual(await escapes(f, own), [], 'no file written outside the snapshot');
        const m = await f.mount(await b.snapshotter.mounts(key));
        const inside = Object.keys((await listTree(m.target)).entries);
        await m.unmount();
        t.diagnostic(`${kind.name} / ${c.name}: ${describeOutcome(outcome)}; snapshot holds [${inside.join(', ')}]`);

        const expected = expectedFor(EXPECTED[c.harm], kind.name);
        if (typeof expected === 'function') {
          const err = await rejectsWith(rethrow(outcome), expected as ErrorClass, c.name);
          if (f.family === 'embedded' && c.entry) {
            assert.ok(namesEntry(err, c.entry), `the error names ${c.entry}: ${err.message} ${JSON.stringify(err.details)}`);
          }
          if (f.family === 'embedded') {
            assert.ok(!err.message.includes(f.tb.dir) && !err.message.includes(own), `no host path in the error: ${err.message}`);
          }
        } else if (expected === 'created') {
          assert.ok(!(outcome instanceof Error), `applied: ${describeOutcome(outcome)}`);
          assert.ok(inside.includes(c.entry), `${c.entry} created inside the snapshot`);
        } else if (outcome instanceof Error) {
          // 'reroot-or-unknown': containerd either re-roots (checked above: nothing escaped) or says UNKNOWN
          await rejectsWith(rethrow(outcome), ErrUnknown, c.name);
        }
      });
    }

    it('a blob cannot be written under a wrong digest', async () => {
      const data = Buffer.from('layer bytes');
      const wrong = sha256('other bytes');
      const ref = f.name('wrong');
      const w = await f.backend.content.writer(ref, { ...f.leased, expected: wrong, total: data.length });
      await w.write(data);
      await rejectsWith(w.commit(), ErrFailedPrecondition);
      assert.ok(await isGone(f.backend.content.info(wrong)));
      await f.backend.content.abort(ref);
    });
  });
}

/** The expectation in a test's title. */
function expectation(kindName: string, c: Case): string {
  const e = expectedFor(EXPECTED[c.harm], kindName);
  return typeof e === 'function' ? e.name : String(e);
}

/** A call that fails with `outcome` when it is an error, else succeeds. */
async function rethrow(outcome: unknown): Promise<void> {
  if (outcome instanceof Error) throw outcome;
}

function namesEntry(err: BuildcacheError, entry: string): boolean {
  const d = err.details;
  return d.entry === entry || d.path === entry || err.message.includes(entry) || err.message.includes(JSON.stringify(entry));
}

function describeOutcome(outcome: unknown): string {
  if (outcome instanceof Error) return `${outcome.constructor.name}: ${outcome.message.split('\n')[0]!.slice(0, 200)}`;
  const d = outcome as { digest?: string };
  return `applied (${d.digest?.slice(0, 19) ?? '?'}…)`;
}
