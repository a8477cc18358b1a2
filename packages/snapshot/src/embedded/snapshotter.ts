/**
 * The embedded snapshotter: containerd's snapshot model (active, view, committed; parents;
 * labels) with metadata in LevelDB and layers on disk as overlayfs layers or native full copies.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { ErrAlreadyExists, ErrFailedPrecondition, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { usage as treeUsage } from '@buildcache/sys';
import type { LeasedOptions, Mount, SnapshotInfo, Snapshotter, Usage } from '../types.js';
import type { EmbeddedContext } from './context.js';
import { SYNC, applyLabelUpdate, checkName, cleanLabels, hasPrefix, keys, scan, writeBatch } from './db.js';
import type { BatchOp } from './db.js';
import { compileFilters, fieldsAdaptor } from './filters.js';
import { removeTree } from './fsutil.js';
import { assertLease, delResource, putResource } from './leases.js';
import { chainIds, getSnapshot, mustGetSnapshot, times, toInfo, touched } from './snapshot-records.js';
import type { SnapshotRecord } from './snapshot-records.js';
import { mountsFor, snapshotDirs } from './snapshot-layout.js';
import type { SnapshotDriver } from './snapshot-layout.js';
import { copyTreeExact } from './tree-copy.js';

/** Label that makes prepare fail when the named target snapshot already exists. */
const LABEL_SNAPSHOT_REF = 'containerd.io/snapshot.ref';

/** The embedded snapshotter over one root; created by `openEmbeddedBackend`. */
export class EmbeddedSnapshotter implements Snapshotter {
  /** `overlayfs` or `native`, as used in lease resource types `snapshots/<name>`. */
  readonly name: SnapshotDriver;
  private nextId = 1;
  /** Keys whose directories are being made (not yet in the DB). */
  private readonly pending = new Set<string>();
  /** Committed snapshots that a pending prepare or view builds on, with counts. */
  private readonly pins = new Map<string, number>();

  private constructor(
    private readonly ctx: EmbeddedContext,
    driver: SnapshotDriver,
    private readonly indexOff: boolean,
  ) {
    this.name = driver;
  }

  /** Opens the snapshotter: finishes interrupted removals and deletes directories without records. */
  static async open(ctx: EmbeddedContext, driver: SnapshotDriver, indexOff: boolean): Promise<EmbeddedSnapshotter> {
    const s = new EmbeddedSnapshotter(ctx, driver, indexOff);
    await s.recover();
    return s;
  }

  /** Snapshot names GC must keep right now because a pending prepare or view builds on them. */
  inFlight(): string[] {
    return [...this.pins.keys()];
  }

  /** The directory that holds snapshot `id` (for GC's disk phase). */
  dirOf(id: number): string {
    return snapshotDirs(this.ctx.root, id).dir;
  }

  prepare(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]> {
    return this.create('active', key, parent, options);
  }

  view(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]> {
    return this.create('view', key, parent, options);
  }

  async mounts(key: string): Promise<Mount[]> {
    const rec = await mustGetSnapshot(this.ctx.db, key);
    if (rec.kind === 'committed') {
      throw new ErrFailedPrecondition(`requested snapshot ${key} not active or view`, { details: { key } });
    }
    return this.mountsOf(rec);
  }

  async commit(name: string, key: string, options?: LeasedOptions): Promise<void> {
    checkName('snapshot name', name);
    const labels = cleanLabels(options?.labels, `snapshot ${JSON.stringify(name)}`);
    const lease = options?.lease;
    await this.ctx.mutex(async () => {
      const rec = await mustGetSnapshot(this.ctx.db, key);
      if (rec.kind !== 'active') throw new ErrFailedPrecondition(`snapshot ${JSON.stringify(key)} is not active`, { details: { key } });
      if (this.pending.has(name) || (await getSnapshot(this.ctx.db, name))) {
        throw new ErrAlreadyExists(`snapshot ${JSON.stringify(name)}: already exists`, { details: { key: name } });
      }
      if (lease !== undefined) await assertLease(this.ctx.db, lease);
      const committed: SnapshotRecord = { id: rec.id, kind: 'committed', ...parentOf(rec), labels, ...times(this.ctx.clockNs()) };
      const ops: BatchOp[] = [
        { type: 'del', key: keys.snapshot(key) },
        { type: 'put', key: keys.snapshot(name), value: committed },
      ];
      if (rec.parent !== undefined) {
        ops.push({ type: 'del', key: keys.child(rec.parent, key) }, { type: 'put', key: keys.child(rec.parent, name), value: '' });
      }
      if (lease !== undefined) ops.push(delResource(lease, this.resourceType, key), putResource(lease, this.resourceType, name));
      await writeBatch(this.ctx.db, ops);
    });
  }

  async remove(key: string): Promise<void> {
    const id = await this.ctx.mutex(async () => {
      const rec = await mustGetSnapshot(this.ctx.db, key);
      if (this.pins.has(key) || (await hasPrefix(this.ctx.db, keys.childPrefix(key)))) {
        throw new ErrFailedPrecondition(`cannot remove snapshot ${JSON.stringify(key)} with child`, { details: { key } });
      }
      const ops: BatchOp[] = [
        { type: 'del', key: keys.snapshot(key) },
        { type: 'put', key: keys.removing(rec.id), value: key },
      ];
      if (rec.parent !== undefined) ops.push({ type: 'del', key: keys.child(rec.parent, key) });
      await writeBatch(this.ctx.db, ops);
      return rec.id;
    });
    await this.finishRemoval(id);
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return toInfo(key, await mustGetSnapshot(this.ctx.db, key));
  }

  async update(info: { name: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.ctx.mutex(async () => {
      const rec = await mustGetSnapshot(this.ctx.db, info.name);
      const labels = applyLabelUpdate(rec.labels, info.labels, fieldpaths, `snapshot ${JSON.stringify(info.name)}`);
      const next: SnapshotRecord = { ...rec, labels, ...touched(rec, this.ctx.clockNs()) };
      await this.ctx.db.put(keys.snapshot(info.name), next, SYNC);
      return toInfo(info.name, next);
    });
  }

  /** Allocated bytes and inodes of the snapshot's tree, hard links once (containerd's count). */
  async usage(key: string): Promise<Usage> {
    const rec = await mustGetSnapshot(this.ctx.db, key);
    return treeUsage(snapshotDirs(this.ctx.root, rec.id).fs);
  }

  async *walk(filters?: readonly string[]): AsyncIterable<SnapshotInfo> {
    const filter = compileFilters(filters);
    for (const [k, rec] of await scan<SnapshotRecord>(this.ctx.db, keys.snapshotPrefix)) {
      const name = k.slice(keys.snapshotPrefix.length);
      if (filter.match(fieldsAdaptor({ name, parent: rec.parent, kind: rec.kind }, rec.labels))) yield toInfo(name, rec);
    }
  }

  /**
   * Deletes the directory of a snapshot whose record is gone, then its removal marker. The marker's
   * delete needs no fsync of its own: if a crash loses it, open finishes the removal again (the
   * directory is already gone, ids are never reused), and the next synced write persists it.
   */
  async finishRemoval(id: number): Promise<void> {
    await removeTree(this.dirOf(id));
    await this.ctx.db.del(keys.removing(id));
  }

  private get resourceType(): string {
    return `snapshots/${this.name}`;
  }

  private async create(kind: 'active' | 'view', key: string, parentArg: string | undefined, options?: LeasedOptions): Promise<Mount[]> {
    checkName('snapshot key', key);
    const parent = parentArg === '' ? undefined : parentArg;
    const labels = cleanLabels(options?.labels, `snapshot ${JSON.stringify(key)}`);
    const lease = options?.lease;
    const { id, parentId } = await this.ctx.mutex(async () => {
      if (this.pending.has(key) || (await getSnapshot(this.ctx.db, key))) {
        throw new ErrAlreadyExists(`snapshot ${JSON.stringify(key)}: already exists`, { details: { key } });
      }
      const target = labels[LABEL_SNAPSHOT_REF];
      if (target !== undefined && (this.pending.has(target) || (await getSnapshot(this.ctx.db, target)))) {
        throw new ErrAlreadyExists(`target snapshot ${JSON.stringify(target)}: already exists`, { details: { key: target } });
      }
      let parentId: number | undefined;
      if (parent !== undefined) {
        const p = await getSnapshot(this.ctx.db, parent);
        if (!p) throw new ErrNotFound(`parent snapshot ${parent} does not exist`, { details: { key: parent } });
        if (p.kind !== 'committed') {
          throw new ErrInvalidArgument(`parent ${JSON.stringify(parent)} is not committed snapshot`, { details: { key: parent } });
        }
        parentId = p.id;
      }
      if (lease !== undefined) await assertLease(this.ctx.db, lease);
      // pinned (kept from remove and GC) until the record is written; a pinned record keeps its id
      if (parent !== undefined) this.pins.set(parent, (this.pins.get(parent) ?? 0) + 1);
      this.pending.add(key);
      return { id: this.nextId++, parentId };
    });
    const dirs = snapshotDirs(this.ctx.root, id);
    try {
      await mkdir(dirs.fs, { recursive: true });
      if (kind === 'active' && this.name === 'overlayfs' && parent !== undefined) await mkdir(dirs.work);
      if (kind === 'active' && this.name === 'native' && parentId !== undefined) {
        await copyTreeExact(snapshotDirs(this.ctx.root, parentId).fs, dirs.fs);
      }
      const rec = await this.ctx.mutex(async () => {
        if (lease !== undefined) await assertLease(this.ctx.db, lease);
        const created: SnapshotRecord = { id, kind, ...(parent !== undefined ? { parent } : {}), labels, ...times(this.ctx.clockNs()) };
        const ops: BatchOp[] = [
          { type: 'put', key: keys.snapshot(key), value: created },
          { type: 'put', key: keys.nextSnapshotId, value: this.nextId },
        ];
        if (parent !== undefined) ops.push({ type: 'put', key: keys.child(parent, key), value: '' });
        if (lease !== undefined) ops.push(putResource(lease, this.resourceType, key));
        await writeBatch(this.ctx.db, ops);
        this.pending.delete(key);
        if (parent !== undefined) this.unpin(parent);
        return created;
      });
      return await this.mountsOf(rec, parentId);
    } catch (err) {
      if (this.pending.delete(key)) {
        if (parent !== undefined) this.unpin(parent);
        await removeTree(dirs.dir).catch(() => undefined);
      }
      throw err;
    }
  }

  private unpin(name: string): void {
    const n = (this.pins.get(name) ?? 1) - 1;
    if (n <= 0) this.pins.delete(name);
    else this.pins.set(name, n);
  }

  /** Mounts of an active snapshot or view; native needs only the parent's dir, not the chain. */
  private async mountsOf(rec: SnapshotRecord, parentId?: number): Promise<Mount[]> {
    const own = snapshotDirs(this.ctx.root, rec.id);
    let ids: number[] = [];
    if (rec.parent !== undefined) {
      if (this.name === 'overlayfs') ids = await chainIds(this.ctx.db, rec.parent);
      else ids = [parentId ?? (await mustGetSnapshot(this.ctx.db, rec.parent)).id];
    }
    const lowers = ids.map((id) => snapshotDirs(this.ctx.root, id).fs);
    return mountsFor({ driver: this.name, indexOff: this.indexOff, kind: rec.kind === 'view' ? 'view' : 'active', own, lowers });
  }

  private async recover(): Promise<void> {
    const db = this.ctx.db;
    for (const [k, key] of await scan<string>(db, keys.removingPrefix)) {
      this.ctx.logger.debug({ key }, 'finishing interrupted snapshot removal');
      await this.finishRemoval(Number(k.slice(keys.removingPrefix.length)));
    }
    const known = new Set<number>();
    let maxId = Number((await db.get(keys.nextSnapshotId)) ?? 1) - 1;
    for (const [, rec] of await scan<SnapshotRecord>(db, keys.snapshotPrefix)) {
      known.add(rec.id);
      maxId = Math.max(maxId, rec.id);
    }
    const base = join(this.ctx.root, 'snapshots');
    await mkdir(base, { recursive: true });
    const limit = pLimit(8);
    const orphans = (await readdir(base)).filter((n) => !known.has(Number(n)) || String(Number(n)) !== n);
    for (const n of orphans) if (/^\d+$/.test(n)) maxId = Math.max(maxId, Number(n));
    await Promise.all(orphans.map((n) => limit(() => removeTree(join(base, n)))));
    if (orphans.length) this.ctx.logger.info({ count: orphans.length }, 'removed snapshot directories without metadata');
    this.nextId = maxId + 1;
  }
}

function parentOf(rec: SnapshotRecord): { parent?: string } {
  return rec.parent !== undefined ? { parent: rec.parent } : {};
}
