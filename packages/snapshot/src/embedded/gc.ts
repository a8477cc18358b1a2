/**
 * Mark-and-sweep garbage collection with containerd's rules. Roots: live (non-expired) leases and
 * objects labelled `containerd.io/gc.root`. Edges: a snapshot's parent, and `gc.ref.content*` /
 * `gc.ref.snapshot.<name>*` labels — the latter not followed from objects held only through a flat
 * lease. The metadata mutex is held for mark and the metadata delete; disk space is freed after.
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
import { SYNC, keys, scan } from './db.js';
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
    // children before parents: deepest first, one depth level at a time
    const byDepth = [...plan.snapshots].sort((a, b) => b.depth - a.depth);
    for (let i = 0; i < byDepth.length; ) {
      const depth = byDepth[i]!.depth;
      const level: number[] = [];
      while (i < byDepth.length && byDepth[i]!.depth === depth) level.push(byDepth[i++]!.id);
      await Promise.all(level.map((id) => limit(() => snapshotter.finishRemoval(id))));
    }
    await Promise.all(plan.blobs.map((d) => limit(() => removeTree(content.blobPath(d)))));
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

interface Plan {
  snapshots: Array<{ id: number; depth: number }>;
  blobs: string[];
  leases: number;
  ingests: number;
}

async function markAndDelete(
  ctx: EmbeddedContext,
  snapshotter: EmbeddedSnapshotter,
  content: EmbeddedContentStore,
  diskDone: Promise<void>,
): Promise<Plan> {
  const now = ctx.clock();
  const db = ctx.db;
  /** Deletions, in groups that must be written together (a snapshot's). */
  const ops: BatchOp[][] = [];
  const leaseRecs = await scan<LeaseRecord>(db, keys.leasePrefix);
  const live = new Map<string, Mode>();
  let leasesRemoved = 0;
  for (const [k, rec] of leaseRecs) {
    const id = k.slice(keys.leasePrefix.length);
    const exp = leaseExpiry(rec.labels);
    if (exp === 'invalid') ctx.logger.warn({ lease: id, value: rec.labels[LABEL_GC_EXPIRE] }, 'invalid gc.expire label; lease never expires');
    if (typeof exp === 'number' && exp <= now) {
      ops.push([{ type: 'del', key: k }]);
      leasesRemoved++;
    } else {
      live.set(id, rec.labels[LABEL_GC_FLAT] ? 'flat' : 'full');
    }
  }

  const snaps = new Map<string, SnapshotRecord>();
  for (const [k, rec] of await scan<SnapshotRecord>(db, keys.snapshotPrefix)) snaps.set(k.slice(keys.snapshotPrefix.length), rec);
  const blobRecs = new Map<string, BlobRecord>();
  for (const [k, rec] of await scan<BlobRecord>(db, keys.blobPrefix)) blobRecs.set(k.slice(keys.blobPrefix.length), rec);
  const blobFiles = new Set(await content.listBlobDigests());

  const marked = { snapshot: new Map<string, Mode>(), content: new Map<string, Mode>() };
  const queue: Node[] = [];
  const mark = (n: Node): void => {
    const seen = marked[n.kind].get(n.id);
    if (seen === 'full' || seen === n.mode) return;
    marked[n.kind].set(n.id, n.mode);
    queue.push(n);
  };

  const keepIngests = new Set<string>();
  const snapType = `snapshots/${snapshotter.name}`;
  for (const [k] of await scan(db, keys.allLeaseResourcesPrefix)) {
    const r = parseResourceKey(k);
    const mode = live.get(r.lease);
    if (mode === undefined) {
      ops.push([{ type: 'del', key: k }]); // resource of an expired (or vanished) lease
      continue;
    }
    if (r.type === 'content') mark({ kind: 'content', id: r.id, mode });
    else if (r.type === 'ingests') keepIngests.add(r.id);
    else if (r.type === snapType) mark({ kind: 'snapshot', id: r.id, mode });
  }
  for (const [name, rec] of snaps) if (rec.labels[LABEL_GC_ROOT]) mark({ kind: 'snapshot', id: name, mode: 'full' });
  for (const [digest, rec] of blobRecs) if (rec.labels[LABEL_GC_ROOT]) mark({ kind: 'content', id: digest, mode: 'full' });
  for (const name of snapshotter.inFlight()) mark({ kind: 'snapshot', id: name, mode: 'full' });

  for (let n = queue.shift(); n; n = queue.shift()) {
    if (n.kind === 'snapshot') {
      const rec = snaps.get(n.id);
      if (!rec) continue;
      if (rec.parent !== undefined) mark({ kind: 'snapshot', id: rec.parent, mode: n.mode });
      if (n.mode === 'full') labelRefs(rec.labels, snapshotter.name).forEach(mark);
    } else if (n.mode === 'full') {
      const rec = blobRecs.get(n.id);
      if (rec) labelRefs(rec.labels, snapshotter.name).forEach(mark);
    }
  }

  const depthOf = (name: string): number => {
    let d = 0;
    for (let p = snaps.get(name)?.parent; p !== undefined && d <= snaps.size; p = snaps.get(p)?.parent) d++;
    return d;
  };
  const dead: Array<{ name: string; rec: SnapshotRecord; depth: number }> = [];
  for (const [name, rec] of snaps) if (!marked.snapshot.has(name)) dead.push({ name, rec, depth: depthOf(name) });
  // Children before parents: a collection cut short between batches leaves no snapshot whose parent is gone.
  dead.sort((a, b) => b.depth - a.depth);
  for (const { name, rec } of dead) {
    const group: BatchOp[] = [{ type: 'del', key: keys.snapshot(name) }, { type: 'put', key: keys.removing(rec.id), value: name }];
    if (rec.parent !== undefined) group.push({ type: 'del', key: keys.child(rec.parent, name) });
    ops.push(group);
  }
  const deadSnapshots: Plan['snapshots'] = dead.map(({ rec, depth }) => ({ id: rec.id, depth }));
  const deadBlobs = [...blobFiles].filter((d) => !marked.content.has(d));
  for (const d of blobRecs.keys()) if (!marked.content.has(d) || !blobFiles.has(d)) ops.push([{ type: 'del', key: keys.blob(d) }]);

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

  await writeInBatches(ctx, ops);
  content.markDeleting(deadBlobs, diskDone);
  return { snapshots: deadSnapshots, blobs: deadBlobs, leases: leasesRemoved, ingests };
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
async function writeInBatches(ctx: EmbeddedContext, groups: readonly BatchOp[][]): Promise<void> {
  let batch: BatchOp[] = [];
  for (const group of groups) {
    batch.push(...group);
    if (batch.length < GC_BATCH_OPS) continue;
    await ctx.db.batch(batch, SYNC);
    batch = [];
  }
  if (batch.length > 0) await ctx.db.batch(batch, SYNC);
}
