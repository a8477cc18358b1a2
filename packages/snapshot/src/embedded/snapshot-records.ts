/** Snapshot metadata records as stored in LevelDB, and lookups over them. */
import { ErrNotFound } from '@buildcache/errdefs';
import type { SnapshotInfo, SnapshotKind } from '../types.js';
import { checkName, keys } from './db.js';
import type { MetaDB } from './db.js';

/** One snapshot as stored: `id` names its directory `<root>/snapshots/<id>`. */
export interface SnapshotRecord {
  readonly id: number;
  readonly kind: SnapshotKind;
  readonly parent?: string;
  readonly labels: Record<string, string>;
  readonly created: number;
  readonly updated: number;
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
  };
}
