/**
 * Prune: delete unused records by policy (filters, age, space caps), least recently and least
 * frequently used first, cascading to parents their children freed; records go by the one
 * deletion protocol (deletion.ts); the backend's garbage collection frees the disk. The manager
 * lock is taken per scan and per deletion, never across the whole prune.
 */
import { statfs } from 'node:fs/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import type { ManagerContext } from './context.js';
import type { CacheRecord } from './records.js';
import { recordSize } from './size.js';
import { forgetRecords, purge, releaseParentsLocked, retryPurges, tombstone } from './deletion.js';
import { compileFilters } from './du.js';
import { loadAllLocked } from './load.js';
import { filterAdaptor, inUseSet, isHeld, isRepresentative, usageOf, type UsageInfo } from './usage.js';

/** One prune policy, BuildKit's PruneInfo. Sizes in bytes, durations in milliseconds. */
export interface PrunePolicy {
  /** Include internal and frontend records. */
  readonly all?: boolean;
  readonly filters?: readonly string[];
  /** Keep records used within this many milliseconds. */
  readonly keepDurationMs?: number;
  /** Never prune the cache below this size (a floor under the other two caps). */
  readonly reservedSpace?: number;
  /** Prune until the cache is at most this size. */
  readonly maxUsedSpace?: number;
  /** Prune until the disk holding the cache has this much free space. */
  readonly minFreeSpace?: number;
}

/** Options of `prune()`. */
export interface PruneOptions {
  /** Called for each record as it is deleted (or would be, in a dry run). */
  readonly onDeleted?: (info: UsageInfo) => void | Promise<void>;
  /** Report what would be deleted, delete nothing. */
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
  /** Free and total bytes of the disk holding the cache (default: statfs of `root`). */
  readonly diskStat?: () => Promise<DiskStat>;
  /** Directory whose disk `minFreeSpace` refers to. */
  readonly root?: string;
}

/** Free and total bytes of a disk. */
export interface DiskStat {
  readonly total: number;
  readonly free: number;
}

/** What a prune did. */
export interface PruneResult {
  readonly deleted: number;
  readonly reclaimed: number;
}

/** Statfs of the disk holding `dir`. */
export async function diskStatOf(dir: string): Promise<DiskStat> {
  const s = await statfs(dir);
  return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

/**
 * How many bytes of cache a policy keeps: 0 means no cap (prune everything that matches),
 * Infinity means no space pressure (prune nothing for space).
 */
export function keepBytes(totalSize: number, disk: DiskStat, p: PrunePolicy): number {
  const maxUsed = p.maxUsedSpace ?? 0;
  const minFree = p.minFreeSpace ?? 0;
  const reserved = p.reservedSpace ?? 0;
  if (!maxUsed && !minFree && !reserved) return 0;
  let keep = maxUsed || Infinity;
  if (minFree) {
    const excess = minFree - disk.free;
    if (excess > 0) keep = Math.min(keep, totalSize - excess);
  }
  return Math.max(keep, reserved);
}

/**
 * Orders candidates: lowest blend of last-used rank and usage-count rank first (LRU/LFU). Last-used
 * times are nanoseconds (`bigint`, strictly ordered) or milliseconds.
 */
export function sortForDeletion<T extends { lastUsedAt?: number | bigint; usageCount: number }>(items: T[]): T[] {
  const rank = <V extends number | bigint>(values: V[]): Map<V, number> => {
    const distinct = [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return new Map(distinct.map((v, i) => [v, i + 1]));
  };
  const lastRank = rank(items.map((i) => i.lastUsedAt ?? -Infinity));
  const countRank = rank(items.map((i) => i.usageCount));
  const maxLast = Math.max(1, lastRank.size);
  const maxCount = Math.max(1, countRank.size);
  const score = (i: T): number =>
    lastRank.get(i.lastUsedAt ?? -Infinity)! / maxLast + countRank.get(i.usageCount)! / maxCount;
  return items
    .map((item) => ({ item, s: score(item) }))
    .sort((a, b) => a.s - b.s)
    .map((x) => x.item);
}

/** Records a dry run treats as deleted, and how many handles that frees on each parent. */
class Removed {
  private readonly set = new Set<CacheRecord>();
  private readonly freed = new Map<CacheRecord, number>();
  has(rec: CacheRecord): boolean {
    return this.set.has(rec);
  }
  add(rec: CacheRecord): void {
    this.set.add(rec);
    const p = rec.parent?.record;
    if (p) this.freed.set(p, (this.freed.get(p) ?? 0) + 1);
  }
  /** No live handle on the record (nor on its equal immutable), discounting removed children, and no holder. */
  isFree(rec: CacheRecord): boolean {
    if (isHeld(rec)) return false;
    if (rec.refs.size - (this.freed.get(rec) ?? 0) > 0) return false;
    return !(rec.equalImmutable && rec.equalImmutable.refs.size > 0);
  }
}

const pruneLocks = new WeakMap<ManagerContext, LimitFunction>();

/** Runs the policies in order, then the backend's garbage collection. */
export async function prune(cm: ManagerContext, policies: readonly PrunePolicy[], options: PruneOptions = {}): Promise<PruneResult> {
  let lock = pruneLocks.get(cm);
  if (!lock) pruneLocks.set(cm, (lock = pLimit(1)));
  return lock(async () => {
    if (!options.dryRun) await retryPurges(cm);
    await cm.mu(() => loadAllLocked(cm));
    let deleted = 0;
    let reclaimed = 0;
    const gone = new Removed();
    for (const policy of policies) {
      const r = await prunePolicy(cm, policy, options, gone);
      deleted += r.deleted;
      reclaimed += r.reclaimed;
    }
    if (!options.dryRun && (deleted > 0 || (await cm.gcDebt.pending()))) await cm.gcDebt.collect(cm.backend);
    return { deleted, reclaimed };
  });
}

/** Records that are free to delete now (no handles once `gone` records are discounted). */
function candidates(cm: ManagerContext, policy: PrunePolicy, gone: Removed): CacheRecord[] {
  const filter = compileFilters(policy.filters);
  const now = cm.now();
  const out: CacheRecord[] = [];
  for (const rec of cm.records.values()) {
    if (gone.has(rec) || !isRepresentative(rec) || !gone.isFree(rec)) continue;
    const type = rec.md.recordType;
    if (!policy.all && (type === 'internal' || type === 'frontend')) continue;
    const lastUsed = rec.md.lastUsedAt;
    if (policy.keepDurationMs && lastUsed !== undefined && lastUsed > now - policy.keepDurationMs) continue;
    if (filter && !filter.match(filterAdaptor(usageOf(rec, false)))) continue;
    out.push(rec);
  }
  return out;
}

async function sizeOf(rec: CacheRecord): Promise<number> {
  return recordSize(rec).catch(() => 0);
}

async function prunePolicy(
  cm: ManagerContext,
  policy: PrunePolicy,
  options: PruneOptions,
  gone: Removed,
): Promise<PruneResult> {
  compileFilters(policy.filters);
  const limit = pLimit(8);
  const spaceMode = Boolean(policy.maxUsedSpace || policy.minFreeSpace || policy.reservedSpace);
  let total = 0;
  let keep = 0;
  if (spaceMode) {
    const all = await cm.mu(() => {
      const inUse = inUseSet(cm.records.values());
      return [...cm.records.values()].filter((r) => isRepresentative(r) && !gone.has(r) && !(r.mutable && inUse.has(r)));
    });
    const sizes = await Promise.all(all.map((r) => limit(() => sizeOf(r))));
    total = sizes.reduce((a, b) => a + b, 0);
    const disk = policy.minFreeSpace
      ? await (options.diskStat ?? (() => diskStatOf(options.root ?? '/')))()
      : { total: 0, free: 0 };
    keep = keepBytes(total, disk, policy);
  }
  let deleted = 0;
  let reclaimed = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    if (spaceMode && total <= keep) break;
    let chosen = await cm.mu(() => candidates(cm, policy, gone));
    if (chosen.length === 0) break;
    const sizes = new Map(await Promise.all(chosen.map((r) => limit(async () => [r, await sizeOf(r)] as const))));
    if (spaceMode) {
      const sorted = sortForDeletion(chosen.map((rec) => ({ rec, lastUsedAt: rec.md.lastUsedNs, usageCount: rec.md.usageCount })));
      chosen = [];
      let projected = total;
      for (const { rec } of sorted) {
        if (projected <= keep) break;
        chosen.push(rec);
        projected -= sizes.get(rec) ?? 0;
      }
    }
    let progressed = false;
    for (let i = 0; i < chosen.length; i += BATCH) {
      const infos = await deleteBatch(cm, chosen.slice(i, i + BATCH), sizes, options.dryRun === true, gone);
      for (const info of infos) {
        progressed = true;
        deleted++;
        reclaimed += info.size;
        total -= info.size;
        await options.onDeleted?.(info);
      }
      options.signal?.throwIfAborted();
    }
    if (!progressed) break;
  }
  return { deleted, reclaimed };
}

/** How many records one deletion step takes (their metadata writes share durable batches). */
const BATCH = 64;

/**
 * Deletes the records that are still free, by the one deletion protocol (deletion.ts): tombstones
 * under the manager lock (committed together), leases and metadata without it, then the parents'
 * handles under it again.
 */
async function deleteBatch(
  cm: ManagerContext,
  recs: readonly CacheRecord[],
  sizes: ReadonlyMap<CacheRecord, number>,
  dryRun: boolean,
  gone: Removed,
): Promise<UsageInfo[]> {
  const infos: UsageInfo[] = [];
  const doomed: CacheRecord[] = [];
  await cm.mu(async () => {
    for (const rec of recs) {
      if (rec.isDead() || gone.has(rec) || !gone.isFree(rec)) continue;
      infos.push({ ...usageOf(rec, false), size: sizes.get(rec) ?? 0 });
      if (dryRun) gone.add(rec);
      else doomed.push(rec, ...(rec.equalImmutable ? [rec.equalImmutable] : []));
    }
    await tombstone(doomed.map((r) => r.md));
    forgetRecords(cm, doomed);
  });
  if (doomed.length === 0) return infos;
  await purge(cm, doomed.map((r) => r.id));
  await cm.mu(() => releaseParentsLocked(doomed));
  return infos;
}
