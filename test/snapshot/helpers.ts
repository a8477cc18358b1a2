/**
 * Shared pieces of the snapshot conformance suite: which backends to run (BACKENDS, narrowed by
 * `BC_BACKENDS`), a per-test fixture with a lease, error-class assertions, the one table of known
 * differences between backends, and small content/snapshot helpers.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrCorruptLayer, ErrFailedPrecondition, ErrNotFound, ErrOutOfRange, ErrUnknown, ErrUnsafeEntry } from '@buildcache/errdefs';
import type { BuildcacheError } from '@buildcache/errdefs';
import type { ActiveMount, Backend, Descriptor, Mount } from '@buildcache/snapshot';
import { BACKENDS } from '../support/backends.js';
import type { BackendKind, TestBackend } from '../support/backends.js';
import { containerdAddress } from '../harness/containerd.js';
import { listTree } from './trees.js';
import type { Listing } from './trees.js';

/** An error class as the assertions take it. */
export type ErrorClass = abstract new (...args: never[]) => BuildcacheError;

/**
 * The backends to run: every kind of BACKENDS, or those whose name contains one of the
 * comma-separated fragments of `BC_BACKENDS` (e.g. `BC_BACKENDS=containerd` or `embedded-native`).
 */
export function backendKinds(): readonly BackendKind[] {
  const wanted = (process.env['BC_BACKENDS'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (wanted.length === 0) return BACKENDS;
  return BACKENDS.filter((k) => wanted.some((w) => k.name.includes(w)));
}

/** `embedded` or `containerd`, from a kind name such as `embedded-native`. */
export function family(kindName: string): 'embedded' | 'containerd' {
  return kindName.startsWith('embedded') ? 'embedded' : 'containerd';
}

/**
 * THE table of known differences between the backends: one row per case where they answer
 * differently. A row maps a kind name (`containerd-native`), else a family (`containerd`,
 * `embedded`), else `default` to what that backend gives. Everything not listed here must be the
 * same on every backend. Keep the comments current: they are the report.
 *
 * Not a difference (checked): an empty snapshot key is ErrInvalidArgument everywhere — the
 * containerd client refuses it before the daemon would say UNKNOWN `bucket name required`.
 */
export const KNOWN_DIFFERENCES = {
  /**
   * Sparse files of a layer (GNU tar `--sparse`): both backends give the same content; the embedded
   * applier keeps the holes (ftruncate, then the data runs at their offsets), containerd's applier
   * writes the whole file, holes as zeros.
   */
  sparseHoles: { containerd: 'filled', embedded: 'kept' },
  /**
   * An old GNU sparse entry (type `S`, GNU tar `--sparse --format=gnu`): containerd's applier fails
   * with UNKNOWN `unhandled tar header type 83`; the embedded applier applies it (as Docker's
   * Go archive/tar reads it). PAX sparse entries (0.0, 0.1, 1.0) apply on both.
   */
  sparseOldGnu: { containerd: ErrUnknown, embedded: 'applied' },
  /**
   * Commit of a VIEW: containerd-native's view has no directory of its own (it binds the parent's),
   * so the daemon fails with UNKNOWN `lstat …/snapshots/N: no such file or directory` before it
   * checks the kind; overlayfs (and the embedded backend) say FAILED_PRECONDITION "not active".
   */
  commitView: { default: ErrFailedPrecondition, 'containerd-native': ErrUnknown },
  /**
   * `ContentWriter.write(chunk, offset)` — an offset argument outside the contract: the embedded
   * writer checks it (containerd's `write @5 must occur at current offset 10` → ErrOutOfRange); the
   * containerd backend's adapter drops the argument and appends (the leases-ts writer would check it).
   */
  writeAtOffset: { containerd: 'ignored', embedded: ErrOutOfRange },
  /**
   * Hostile layer entries (`../x`, absolute paths, escaping symlinks/hard links/whiteouts):
   * containerd re-roots them inside the snapshot and succeeds, or fails with UNKNOWN (reference
   * §11); the embedded applier refuses them with ErrUnsafeEntry naming the entry. Neither writes
   * outside the snapshot.
   */
  hostileEntry: { containerd: 'reroot-or-unknown', embedded: ErrUnsafeEntry },
  /**
   * An entry the filesystem cannot hold (a name component over 255 bytes): containerd says UNKNOWN;
   * the embedded applier gives the class of the errno (ENAMETOOLONG: ErrUnsafeEntry) naming the
   * entry, with no host path in the message.
   */
  unholdableEntry: { containerd: ErrUnknown, embedded: ErrUnsafeEntry },
  /**
   * Many extended headers chained before one entry (64 PAX headers of 32 KiB): containerd keeps only
   * the last and applies the entry; the embedded reader bounds extended headers per entry (1 MiB in
   * total, so memory does not grow with the chain) and gives ErrCorruptLayer.
   */
  extendedHeaderChain: { containerd: 'created', embedded: ErrCorruptLayer },
  /**
   * Differ output: every header is the same except whiteout entries' mtime — containerd stamps them
   * with the time of the diff (so its diffs are not reproducible, and overlayfs ≠ native), the
   * embedded differ writes 0 (byte-identical in both modes). Checked in apply-diff.test.ts.
   */
  whiteoutMtime: { containerd: 'time of the diff', embedded: '0' },
  /**
   * A whiteout `b/.wh.c` followed in the same layer by a directory `b/c/`: the new directory
   * replaces the lower one (its lower content is hidden), except on containerd-overlayfs, whose
   * applier swaps the whiteout for a plain directory without making it opaque, so the lower
   * directory's content shows through (checked in layer-entries.test.ts).
   */
  dirAfterWhiteout: { default: 'replaces', 'containerd-overlayfs': 'merges' },
  /** Corrupt streams (truncated gzip, gzip bytes labelled as plain tar): UNKNOWN vs ErrCorruptLayer. */
  corruptLayer: { containerd: ErrUnknown, embedded: ErrCorruptLayer },
} as const;

/** What a KNOWN_DIFFERENCES row says for a backend kind (by kind name, then family, then default). */
export function expectedFor(row: Readonly<Record<string, unknown>>, kindName: string): unknown {
  return row[kindName] ?? row[family(kindName)] ?? row['default'];
}

/** The error class a KNOWN_DIFFERENCES row gives for a backend kind. */
export function expectedClass(row: Readonly<Record<string, unknown>>, kindName: string): ErrorClass {
  const cls = expectedFor(row, kindName);
  if (typeof cls !== 'function') throw new Error(`row has no error class for ${kindName}`);
  return cls as ErrorClass;
}

/** Asserts that `p` rejects with an instance of `cls` (matched by class, never by text); returns the error. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), cls: ErrorClass, what = ''): Promise<BuildcacheError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    caught = err;
  }
  const label = what ? `${what}: ` : '';
  if (caught === undefined) assert.fail(`${label}expected ${cls.name}, but the call succeeded`);
  if (!(caught instanceof cls)) {
    const e = caught as Error;
    assert.fail(`${label}expected ${cls.name}, got ${e?.constructor?.name ?? typeof caught}: ${e?.message ?? String(caught)}`);
  }
  return caught as BuildcacheError;
}

/** True when the promise rejects with ErrNotFound (the object is gone), false when it resolves. */
export async function isGone(p: Promise<unknown>): Promise<boolean> {
  try {
    await p;
    return false;
  } catch (err) {
    if (err instanceof ErrNotFound) return true;
    throw err;
  }
}

/** A fresh backend plus a (normal) lease to create objects under, and unique names. */
export interface Fixture {
  readonly kind: BackendKind;
  readonly tb: TestBackend;
  readonly backend: Backend;
  readonly family: 'embedded' | 'containerd';
  /** A normal (non-flat) lease created for this test. */
  readonly lease: string;
  /** `{ lease }`, to spread into options. */
  readonly leased: { lease: string };
  /** A name unique within the run, with `tag` in it. */
  name(tag: string): string;
  /** Mounts `mounts` (through `backend.mounter`), remembered so close() unmounts it. */
  mount(mounts: readonly Mount[]): Promise<ActiveMount>;
  close(): Promise<void>;
}

/** Opens a fresh backend of `kind` with a lease. */
export async function openFixture(kind: BackendKind): Promise<Fixture> {
  const tb = await kind.open();
  const token = randomBytes(4).toString('hex');
  const lease = `conf-${token}`;
  await tb.backend.leases.create(lease, {});
  const active: ActiveMount[] = [];
  let n = 0;
  return {
    kind,
    tb,
    get backend() {
      return tb.backend;
    },
    family: family(kind.name),
    lease,
    leased: { lease },
    name: (tag) => `${tag}-${token}-${n++}`,
    async mount(mounts) {
      const m = await tb.backend.mounter.mount(mounts);
      active.push(m);
      return m;
    },
    async close() {
      for (const m of active.reverse()) await m.unmount().catch(() => undefined);
      if (family(kind.name) === 'containerd') {
        // leave the shared daemon clean: drop this namespace's leases and collect
        for (const l of await tb.backend.leases.list().catch(() => [])) await tb.backend.leases.delete(l.id).catch(() => undefined);
        await tb.backend.garbageCollect().catch(() => undefined);
      }
      await tb.close();
    },
  };
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Writes `data` as a blob with expected digest and size; returns the digest. */
export async function writeBlob(
  backend: Backend,
  data: Uint8Array | string,
  options: { lease?: string; labels?: Record<string, string>; ref?: string } = {},
): Promise<string> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const digest = sha256(bytes);
  const ref = options.ref ?? `ingest-${digest.slice(7, 23)}-${randomBytes(3).toString('hex')}`;
  const w = await backend.content.writer(ref, { ...(options.lease ? { lease: options.lease } : {}), total: bytes.byteLength, expected: digest });
  await w.write(bytes);
  return w.commit({ size: bytes.byteLength, expected: digest, ...(options.labels ? { labels: options.labels } : {}) });
}

/** Reads a whole blob (or a range of it). */
export async function readBlob(backend: Backend, digest: string, range?: { offset?: number; length?: number }): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of backend.content.read(digest, range)) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/** Every item of an async iterable. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Sorted snapshot names of a walk with `filters`. */
export async function walkNames(backend: Backend, filters?: readonly string[]): Promise<string[]> {
  return (await collect(backend.snapshotter.walk(filters))).map((i) => i.name).sort();
}

/** Prepares `name`-active on `parent` and commits it as `name`, under `lease`; returns the prepare mounts. */
export async function committed(
  backend: Backend,
  name: string,
  parent: string | undefined,
  options: { lease?: string; labels?: Record<string, string> } = {},
): Promise<Mount[]> {
  const lease = options.lease ? { lease: options.lease } : {};
  const mounts = await backend.snapshotter.prepare(`${name}-active`, parent, lease);
  await backend.snapshotter.commit(name, `${name}-active`, { ...lease, ...(options.labels ? { labels: options.labels } : {}) });
  return mounts;
}

/** The directory a prepare/view mount list exposes as its own layer (overlay upperdir or bind source). */
export function ownDir(mounts: readonly Mount[]): string {
  const m = mounts[0];
  if (!m) throw new Error('no mounts');
  if (m.type === 'overlay') {
    const upper = m.options.find((o) => o.startsWith('upperdir='));
    if (upper) return upper.slice('upperdir='.length);
    const lower = m.options.find((o) => o.startsWith('lowerdir='));
    return lower!.slice('lowerdir='.length).split(':')[0]!;
  }
  return m.source;
}

/** Where a backend keeps blob files, if the test can know it (embedded root, or the harness daemon's root). */
export function blobFile(backend: Backend, digest: string): string | undefined {
  const hex = digest.replace(/^sha256:/, '');
  const root = (backend as Backend & { root?: string }).root;
  if (backend.kind === 'embedded' && root) return join(root, 'content', 'blobs', 'sha256', hex);
  if (backend.kind === 'containerd') {
    return join(dirname(containerdAddress()), 'root', 'io.containerd.content.v1.content', 'blobs', 'sha256', hex);
  }
  return undefined;
}

/** Writes a layer blob and returns its descriptor. */
export async function layerDesc(f: Fixture, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  // (a blob that already exists is reused: re-writing it is content.test.ts's business)
  const known = await f.backend.content.info(sha256(bytes)).then(() => true, () => false);
  if (known) await f.backend.leases.addResource(f.lease, { type: 'content', id: sha256(bytes) });
  const digest = known ? sha256(bytes) : await writeBlob(f.backend, bytes, f.leased);
  return { mediaType, digest, size: bytes.length };
}

/** Prepares `name` on `parent`, applies `desc`, commits; returns the applied descriptor. */
export async function applyCommit(f: Fixture, name: string, parent: string | undefined, desc: Descriptor): Promise<Descriptor> {
  const mounts = await f.backend.snapshotter.prepare(`${name}-active`, parent, f.leased);
  const applied = await f.backend.applier.apply(desc, mounts);
  await f.backend.snapshotter.commit(name, `${name}-active`, f.leased);
  return applied;
}

/** The listing of committed snapshot `name`, read through a real mount of a view. */
export async function listSnapshot(f: Fixture, name: string): Promise<Listing> {
  const view = await f.backend.snapshotter.view(f.name(`${name}-list`), name, f.leased);
  const m = await f.mount(view);
  try {
    const listing = await listTree(m.target);
    const mounted = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === m.target);
    // another process lazily unmounting /tmp/buildcache-mount-* (test/cache/crash.test.ts does) would empty the view
    assert.ok(mounted, `${m.target} is still mounted after listing it`);
    return listing;
  } finally {
    await m.unmount();
  }
}
