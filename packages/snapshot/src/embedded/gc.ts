/**
 * Mark-and-sweep garbage collection with containerd's rules. Roots: live (non-expired) leases and
 * objects labelled `containerd.io/gc.root`. Edges: a snapshot's parent, and `gc.ref.content*` /
 * `gc.ref.snapshot.<name>*` labels — the latter not followed from objects held only through a flat
 * lease. The metadata mutex is held for mark and the metadata delete; disk space is freed after.
 * Memory: the stores are streamed, only each object's edges are kept, and deletions are written
 * and disk removals started a bounded slice at a time (at 10,000 snapshots, building every batch
 * operation and every removal at once had V8 promote ~36 MiB that stayed until the next full GC).
 */
import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';
import {
  LABEL_GC_EXPIRE,
  LABEL_GC_FLAT,
  LABEL_GC_REF_CONTENT,
  LABEL_GC_REF_SNAPSHOT,
  LABEL_GC_ROOT,
} from '../labels.js';
import type { GCStats } from '../types.js';
import type { EmbeddedContext } from './context.js';
import type { EmbeddedContentStore } from './content.js';
import type { BlobRecord } from './content.js';
import { ingestExpiry, listIngests } from './content-ingest.js';
import { keys, range, writeBatch } from './db.js';
import type { BatchOp } from './db.js';
import { removeTree } from './fsutil.js';
import type { LeaseRecord } from './leases.js';
import { parseResourceKey } from './leases.js';
import type { SnapshotRecord } from './snapshot-records.js';
import type { EmbeddedSnapshotter } from './snapshotter.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The expiry of a lease in ms, or undefined when it has none or an invalid one (never expires). */
export function leaseExpiry(labels: Readonly<Record<string, string>>): number | 'invalid' | undefined {
  const v = labels[LABEL_GC_EXPIRE];
  if (v === undefined) return undefined;
  const t = RFC3339.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(t) ? 'invalid' : t;
}

type Mode = 'flat' | 'full';
type Node = { kind: 'snapshot' | 'content'; id: string; mode: Mode };

/** Label references of an object: content digests and (our snapshotter's) snapshot keys. */
export function labelRefs(labels: Readonly<Record<string, string>>, snapshotter: string): Node[] {
  const out: Node[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (k === LABEL_GC_REF_CONTENT || k.startsWith(`${LABEL_GC_REF_CONTENT}.`) || k.startsWith(`${LABEL_GC_REF_CONTENT}/`)) {
      out.push({ kind: 'content', id: v, mode: 'full' });
    } else if (k.startsWith(`${LABEL_GC_REF_SNAPSHOT}.`)) {
      const ss = k.slice(LABEL_GC_REF_SNAPSHOT.length + 1).split('/')[0];
      if (ss === snapshotter) out.push({ kind: 'snapshot', id: v, mode: 'full' });
    }
  }
  return out;
}

/** Runs one full collection over the embedded stores. */
export async function collectGarbage(ctx: EmbeddedContext, snapshotter: EmbeddedSnapshotter, content: EmbeddedContentStore): Promise<GCStats> {
  const started = performance.now();
  let releaseDisk!: () => void;
  const diskDone = new Promise<void>((resolve) => {
    releaseDisk = resolve;
  });
  const plan = await ctx.mutex(() => markAndDelete(ctx, snapshotter, content, diskDone)).catch((err: unknown) => {
    releaseDisk();
    throw err;
  });
  try {
    const limit = pLimit(8);
    // children before parents: deepest first (the plan's order), one depth level at a time
    const dead = plan.snapshots;
    for (let i = 0; i < dead.length; ) {
      const depth = dead[i]!.depth;
      const level: number[] = [];
      while (i < dead.length && dead[i]!.depth === depth) level.push(dead[i++]!.id);
      await inSlices(level, (id) => limit(() => snapshotter.finishRemoval(id)));
    }
    await inSlices(plan.blobs, (d) => limit(() => removeTree(content.blobPath(d))));
  } finally {
    releaseDisk();
  }
  const stats: GCStats = {
    snapshotsRemoved: plan.snapshots.length,
    contentRemoved: plan.blobs.length,
    leasesRemoved: plan.leases,
    durationMs: performance.now() - started,
  };
  ctx.logger.info({ ...stats, ingestsRemoved: plan.ingests }, 'garbage collection done');
  return stats;
}

/** How many disk removals are handed to the limiter at once (the rest wait unallocated). */
const REMOVAL_SLICE = 256;

/** Runs `fn` over `items`, `REMOVAL_SLICE` at a time. */
async function inSlices<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += REMOVAL_SLICE) await Promise.all(items.slice(i, i + REMOVAL_SLICE).map(fn));
}

interface Plan {
  /** Deepest first. */
  snapshots: Array<{ id: number; depth: number }>;
  blobs: string[];
  leases: number;
  ingests: number;
}

/** What marking needs of a snapshot or blob: its parent and label references (not its record). */
interface Edges {
  readonly parent?: string;
  readonly refs?: Node[];
}

/** The edges of an object with `labels` (and `parent`), sharing one empty object when it has none. */
const NO_EDGES: Edges = {};
function edgesOf(labels: Readonly<Record<string, string>>, snapshotter: string, parent?: string): Edges {
  const refs = labelRefs(labels, snapshotter);
  if (refs.length === 0) return parent === undefined ? NO_EDGES : { parent };
  return parent === undefined ? { refs } : { parent, refs };
}

async function markAndDelete(
  ctx: EmbeddedContext,
  snapshotter: EmbeddedSnapshotter,
  content: EmbeddedContentStore,
  diskDone: Promise<void>,
): Promise<Plan> {
  const now = ctx.clock();
  const db = ctx.db;
  /** Keys of expired leases and of resources of leases that are gone, deleted first. */
  const stale: string[] = [];
  const live = new Map<string, Mode>();
  let leasesRemoved = 0;
  for await (const [k, v] of db.iterator(range(keys.leasePrefix))) {
    const rec = v as LeaseRecord;
    const id = k.slice(keys.leasePrefix.length);
    const exp = leaseExpiry(rec.labels);
    if (exp === 'invalid') ctx.logger.warn({ lease: id, value: rec.labels[LABEL_GC_EXPIRE] }, 'invalid gc.expire label; lease never expires');
    if (typeof exp === 'number' && exp <= now) {
      stale.push(k);
      leasesRemoved++;
    } else {
      live.set(id, rec.labels[LABEL_GC_FLAT] ? 'flat' : 'full');
    }
  }

  const marked = { snapshot: new Map<string, Mode>(), content: new Map<string, Mode>() };
  const queue: Node[] = [];
  const mark = (n: Node): void => {
    const seen = marked[n.kind].get(n.id);
    if (seen === 'full' || seen === n.mode) return;
    marked[n.kind].set(n.id, n.mode);
    queue.push(n);
  };

  const snaps = new Map<string, Edges & { readonly id: number }>();
  for await (const [k, v] of db.iterator(range(keys.snapshotPrefix))) {
    const rec = v as SnapshotRecord;
    const name = k.slice(keys.snapshotPrefix.length);
    snaps.set(name, { id: rec.id, ...edgesOf(rec.labels, snapshotter.name, rec.parent) });
    if (rec.labels[LABEL_GC_ROOT]) mark({ kind: 'snapshot', id: name, mode: 'full' });
  }
  const blobRecs = new Map<string, Edges>();
  for await (const [k, v] of db.iterator(range(keys.blobPrefix))) {
    const rec = v as BlobRecord;
    const digest = k.slice(keys.blobPrefix.length);
    blobRecs.set(digest, edgesOf(rec.labels, snapshotter.name));
    if (rec.labels[LABEL_GC_ROOT]) mark({ kind: 'content', id: digest, mode: 'full' });
  }
  const blobFiles = new Set(await content.listBlobDigests());

  const keepIngests = new Set<string>();
  const snapType = `snapshots/${snapshotter.name}`;
  for await (const k of db.keys(range(keys.allLeaseResourcesPrefix))) {
    const r = parseResourceKey(k);
    const mode = live.get(r.lease);
    if (mode === undefined) {
      stale.push(k); // resource of an expired (or vanished) lease
      continue;
    }
    if (r.type === 'content') mark({ kind: 'content', id: r.id, mode });
    else if (r.type === 'ingests') keepIngests.add(r.id);
    else if (r.type === snapType) mark({ kind: 'snapshot', id: r.id, mode });
  }
  for (const name of snapshotter.inFlight()) mark({ kind: 'snapshot', id: name, mode: 'full' });

  for (let n = queue.pop(); n; n = queue.pop()) {
    const edges = n.kind === 'snapshot' ? snaps.get(n.id) : blobRecs.get(n.id);
    if (!edges) continue;
    if (edges.parent !== undefined) mark({ kind: 'snapshot', id: edges.parent, mode: n.mode });
    if (n.mode === 'full') edges.refs?.forEach(mark);
  }

  const depthOf = (name: string): number => {
    let d = 0;
    for (let p = snaps.get(name)?.parent; p !== undefined && d <= snaps.size; p = snaps.get(p)?.parent) d++;
    return d;
  };
  const dead: Array<{ name: string; id: number; parent?: string; depth: number }> = [];
  for (const [name, s] of snaps) {
    if (!marked.snapshot.has(name)) dead.push({ name, id: s.id, ...(s.parent !== undefined ? { parent: s.parent } : {}), depth: depthOf(name) });
  }
  // Children before parents: a collection cut short between batches leaves no snapshot whose parent is gone.
  dead.sort((a, b) => b.depth - a.depth);
  const deadBlobs = [...blobFiles].filter((d) => !marked.content.has(d));
  const goneBlobRecs = [...blobRecs.keys()].filter((d) => !marked.content.has(d) || !blobFiles.has(d));

  let ingests = 0;
  // An ingest lives while a live lease holds it or, opened without a lease, until its expiry; a
  // partial upload whose lease is gone is removed now (as containerd does).
  for (const { dir, status } of await listIngests(content.ingestRoot)) {
    if (status && (keepIngests.has(status.ref) || content.isLocked(status.ref))) continue;
    const expiry = status ? await ingestExpiry(dir) : undefined;
    if (expiry !== undefined && expiry > now) continue;
    await removeTree(dir); // half-made ingests (no ref file) are leftovers of a crash
    ingests++;
  }

  /** The deletions, in groups that must be written together (a snapshot's), made as they are written. */
  function* deletions(): Generator<BatchOp[]> {
    for (const key of stale) yield [{ type: 'del', key }];
    for (const { name, id, parent } of dead) {
      const group: BatchOp[] = [{ type: 'del', key: keys.snapshot(name) }, { type: 'put', key: keys.removing(id), value: name }];
      if (parent !== undefined) group.push({ type: 'del', key: keys.child(parent, name) });
      yield group;
    }
    for (const d of goneBlobRecs) yield [{ type: 'del', key: keys.blob(d) }];
  }
  await writeInBatches(ctx, deletions());
  content.markDeleting(deadBlobs, diskDone);
  return { snapshots: dead.map(({ id, depth }) => ({ id, depth })), blobs: deadBlobs, leases: leasesRemoved, ingests };
}

/**
 * How many operations one GC batch holds at most: LevelDB builds a whole batch in memory and then
 * in its write buffer, so one batch for a large collection (three operations per snapshot) cost
 * tens of MiB of resident memory at 10,000 snapshots.
 */
const GC_BATCH_OPS = 2048;

/**
 * Writes the groups of a collection in order, in batches of about `GC_BATCH_OPS` operations, each
 * group within one batch. A crash between batches leaves the rest for the next collection
 * (nothing marks them live).
 */
async function writeInBatches(ctx: EmbeddedContext, groups: Iterable<BatchOp[]>): Promise<void> {
  let batch: BatchOp[] = [];
  for (const group of groups) {
    batch.push(...group);
    if (batch.length < GC_BATCH_OPS) continue;
    await writeBatch(ctx.db, batch);
    batch = [];
  }
  if (batch.length > 0) await writeBatch(ctx.db, batch);
}
