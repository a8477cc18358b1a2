/**
 * The view of records that `du` and `prune` share: which records stand for their data (a mutable
 * record and its equal immutable are one entry), which are in use, and how filters see them.
 */
import type { CacheRecord } from './records.js';
import type { RecordMetadata, RecordType } from './record-metadata.js';

/** One entry of `diskUsage()` and of prune results, with `buildctl du`'s fields. */
export interface UsageInfo {
  readonly id: string;
  readonly mutable: boolean;
  readonly inUse: boolean;
  /** Bytes; -1 while unknown (never in `diskUsage()` output, which computes it); 0 for a mutable record in use. */
  readonly size: number;
  readonly createdAt: Date;
  readonly lastUsedAt?: Date;
  readonly usageCount: number;
  readonly parents: readonly string[];
  readonly description?: string;
  readonly recordType: RecordType;
  /** Whether the data is also held by something outside this cache (never, on these backends yet). */
  readonly shared: boolean;
}

/** Field names filters may use, as in BuildKit. */
export const FILTER_FIELDS = ['id', 'type', 'description', 'parents', 'inuse', 'mutable', 'immutable', 'shared', 'private'] as const;

/**
 * Whether `rec` is the entry that stands for its data: of a mutable record and its equal
 * immutable, the immutable while it has handles, otherwise the mutable one.
 */
export function isRepresentative(rec: CacheRecord): boolean {
  if (rec.isDead()) return false;
  if (rec.mutable && rec.equalImmutable && rec.equalImmutable.refs.size > 0) return false;
  if (!rec.mutable && rec.equalMutable && rec.refs.size === 0) return false;
  return true;
}

/**
 * The record that stands for `rec`'s data now: `rec`, or the other of its pair when handles moved
 * since `rec` was chosen (e.g. its committed twin's last handle went). Undefined for a dead record.
 */
export function representativeOf(rec: CacheRecord): CacheRecord | undefined {
  if (isRepresentative(rec)) return rec;
  const other = rec.mutable ? rec.equalImmutable : rec.equalMutable;
  return other && isRepresentative(other) ? other : undefined;
}

/** `rec` and the record it shares data with, if any: they are deleted together. */
export function pairOf(rec: CacheRecord): CacheRecord[] {
  const other = rec.equalImmutable ?? rec.equalMutable;
  return other ? [rec, other] : [rec];
}

/** Whether something outside the cache holds the record of `md` (`setHeld`): it is in use and never pruned. */
export function isHeldMetadata(md: RecordMetadata): boolean {
  return md.holders.length > 0;
}

/** Whether something outside the cache holds the record or its equal partner (`setHeld`). */
export function isHeld(rec: CacheRecord): boolean {
  return [rec, rec.equalMutable, rec.equalImmutable].some((r) => r !== undefined && isHeldMetadata(r.md));
}

/**
 * Records that are in use: held by a handle that is not another record's (a child's parent
 * handle or an equal immutable's link) or by a holder outside the cache, or an ancestor or equal partner of such a record.
 */
export function inUseSet(records: Iterable<CacheRecord>): Set<CacheRecord> {
  const internal = new Map<CacheRecord, number>();
  const all: CacheRecord[] = [];
  for (const rec of records) {
    if (rec.isDead()) continue;
    all.push(rec);
    const parent = rec.parent?.record;
    if (parent) internal.set(parent, (internal.get(parent) ?? 0) + 1);
    if (rec.linkHandle) internal.set(rec, (internal.get(rec) ?? 0) + 1);
  }
  const inUse = new Set<CacheRecord>();
  const stack: CacheRecord[] = [];
  for (const rec of all) {
    if (rec.refs.size > (internal.get(rec) ?? 0) || isHeld(rec)) stack.push(rec);
  }
  while (stack.length) {
    const rec = stack.pop()!;
    if (inUse.has(rec)) continue;
    inUse.add(rec);
    const next = [rec.parent?.record, rec.equalMutable, rec.equalImmutable];
    for (const r of next) if (r && !inUse.has(r)) stack.push(r);
  }
  return inUse;
}

/** The usage entry of a record (size as currently known). */
export function usageOf(rec: CacheRecord, inUse: boolean): UsageInfo {
  return usageOfMetadata(rec.md, rec.mutable, inUse);
}

/** The usage entry of a record from its metadata (for a record that is not in memory). */
export function usageOfMetadata(md: RecordMetadata, mutable: boolean, inUse: boolean): UsageInfo {
  const lastUsed = md.lastUsedAt;
  const parent = md.parent;
  const description = md.description;
  return {
    id: md.id,
    mutable,
    inUse,
    size: mutable && inUse ? 0 : md.size,
    createdAt: new Date(md.createdAt),
    ...(lastUsed !== undefined ? { lastUsedAt: new Date(lastUsed) } : {}),
    usageCount: md.usageCount,
    parents: parent ? [parent] : [],
    ...(description !== undefined ? { description } : {}),
    recordType: md.recordType,
    shared: false,
  };
}

/** How filters see a usage entry (`field` → value; presence-only fields are 'true' or absent). */
export function filterAdaptor(u: UsageInfo): (fieldpath: readonly string[]) => string | undefined {
  return (path) => {
    switch (path[0]) {
      case 'id':
        return u.id;
      case 'type':
        return u.recordType;
      case 'description':
        return u.description;
      case 'parents':
        return u.parents.length ? u.parents.join(';') : undefined;
      case 'inuse':
        return u.inUse ? 'true' : undefined;
      case 'mutable':
        return u.mutable ? 'true' : undefined;
      case 'immutable':
        return u.mutable ? undefined : 'true';
      case 'shared':
        return u.shared ? 'true' : undefined;
      case 'private':
        return u.shared ? undefined : 'true';
      default:
        return undefined;
    }
  };
}
