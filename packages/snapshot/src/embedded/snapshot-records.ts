/** Snapshot metadata records as stored in LevelDB, and lookups over them. */
import { ErrNotFound } from '@buildcache/errdefs';
import { msToNs, nsToMs } from '../clock.js';
import type { SnapshotInfo, SnapshotKind } from '../types.js';
import { checkName, keys } from './db.js';
import type { MetaDB } from './db.js';

/** One snapshot as stored: `id` names its directory `<root>/snapshots/<id>`. */
export interface SnapshotRecord {
  readonly id: number;
  readonly kind: SnapshotKind;
  readonly parent?: string;
  readonly labels: Record<string, string>;
  /** Milliseconds since the epoch (what older roots have alone). */
  readonly created: number;
  readonly updated: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  readonly createdNs?: string;
  readonly updatedNs?: string;
}

/** The time fields of a record created (or updated) at `created` (`updated`), in nanoseconds. */
export function times(created: bigint, updated = created): Pick<SnapshotRecord, 'created' | 'updated' | 'createdNs' | 'updatedNs'> {
  return { created: nsToMs(created), updated: nsToMs(updated), createdNs: String(created), updatedNs: String(updated) };
}

/** The creation time of a record in nanoseconds. */
function createdNs(rec: SnapshotRecord): bigint {
  return rec.createdNs !== undefined ? BigInt(rec.createdNs) : msToNs(rec.created);
}

/** The last update time of a record in nanoseconds. */
function updatedNs(rec: SnapshotRecord): bigint {
  return rec.updatedNs !== undefined ? BigInt(rec.updatedNs) : msToNs(rec.updated);
}

/** The time fields of `rec` with the update time set to `updated`. */
export function touched(rec: SnapshotRecord, updated: bigint): Pick<SnapshotRecord, 'created' | 'updated' | 'createdNs' | 'updatedNs'> {
  return times(createdNs(rec), updated);
}

/** The record of `name`, or undefined. */
export async function getSnapshot(db: MetaDB, name: string): Promise<SnapshotRecord | undefined> {
  return (await db.get(keys.snapshot(name))) as SnapshotRecord | undefined;
}

/** The record of `name`, or ErrNotFound naming it. */
export async function mustGetSnapshot(db: MetaDB, name: string): Promise<SnapshotRecord> {
  checkName('snapshot key', name);
  const rec = await getSnapshot(db, name);
  if (!rec) throw new ErrNotFound(`snapshot ${name} does not exist`, { details: { key: name } });
  return rec;
}

/** Ids of `name` and its ancestors, nearest first. */
export async function chainIds(db: MetaDB, name: string): Promise<number[]> {
  const ids: number[] = [];
  let next: string | undefined = name;
  while (next !== undefined) {
    const rec: SnapshotRecord = await mustGetSnapshot(db, next);
    ids.push(rec.id);
    next = rec.parent;
  }
  return ids;
}

/** The public view of a record. */
export function toInfo(name: string, rec: SnapshotRecord): SnapshotInfo {
  return {
    name,
    ...(rec.parent !== undefined ? { parent: rec.parent } : {}),
    kind: rec.kind,
    labels: { ...rec.labels },
    createdAt: new Date(rec.created),
    updatedAt: new Date(rec.updated),
    createdAtNs: createdNs(rec),
    updatedAtNs: updatedNs(rec),
  };
}
