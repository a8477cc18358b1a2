/**
 * Prune: delete unused records by policy (filters, age, space caps), least recently and least
 * frequently used first, cascading to parents their children freed; records go by the one
 * deletion protocol (deletion.ts); the backend's garbage collection frees the disk. Records are
 * streamed from the store (prune-census.ts) and loaded only to be deleted, so memory stays bounded.
 * The manager lock is taken per batch, never across the whole prune.
 */
import { pruneDeleted, pruneReclaimedBytes } from './metrics.js';
import { statfs } from 'node:fs/promises';
import type { ManagerContext } from './context.js';
import { retryPurges } from './deletion.js';
import { compileFilters } from './du.js';
import { takeCensus, Removed, type Candidate, type Census } from './prune-census.js';
import { PruneDeleter } from './prune-delete.js';
import { serialLock, type SerialLock } from './serial.js';
import { stopWatchingNewChildren } from './new-children.js';
import type { UsageInfo } from './usage.js';

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

const pruneLocks = new WeakMap<ManagerContext, SerialLock>();

/** Runs the policies in order, then the backend's garbage collection. */
export async function prune(cm: ManagerContext, policies: readonly PrunePolicy[], options: PruneOptions = {}): Promise<PruneResult> {
  let lock = pruneLocks.get(cm);
  if (!lock) pruneLocks.set(cm, (lock = serialLock()));
  return lock(async () => {
    if (!options.dryRun) await retryPurges(cm);
    let deleted = 0;
    let reclaimed = 0;
    const gone = new Removed();
    const deleter = new PruneDeleter(cm, gone, options.dryRun === true);
    try {
      for (const policy of policies) {
        const r = await prunePolicy(cm, policy, options, gone, deleter);
        deleted += r.deleted;
        reclaimed += r.reclaimed;
      }
    } finally {
      stopWatchingNewChildren(cm);
      await deleter.drain();
    }
    if (!options.dryRun) {
      pruneDeleted.inc(deleted);
      pruneReclaimedBytes.inc(reclaimed);
    }
    if (!options.dryRun && (deleted > 0 || (await cm.gcDebt.pending()))) await cm.gcDebt.collect(cm.backend);
    return { deleted, reclaimed };
  });
}

/** Deletes candidates (in batches) and counts what went; returns the candidates it deleted. */
async function deleteCandidates(
  chosen: readonly Candidate[],
  census: Census,
  options: PruneOptions,
  deleter: PruneDeleter,
  result: { deleted: number; reclaimed: number },
): Promise<Candidate[]> {
  const done: Candidate[] = [];
  for (let i = 0; i < chosen.length; i += BATCH) {
    for (const [cand, info] of await deleter.deleteBatch(chosen.slice(i, i + BATCH), census)) {
      done.push(cand);
      result.deleted++;
      result.reclaimed += info.size;
      await options.onDeleted?.(info);
    }
    options.signal?.throwIfAborted();
  }
  return done;
}

/**
 * One policy, in passes as BuildKit loops its rounds: each pass takes a census and deletes what it
 * can; another pass follows one that deleted something (and, with space caps, left the cache above
 * them). A record a pass could not delete (in use when its batch came up, or made after its census)
 * that is free by the next pass's census goes too, so what is left does not depend on timing.
 */
async function prunePolicy(
  cm: ManagerContext,
  policy: PrunePolicy,
  options: PruneOptions,
  gone: Removed,
  deleter: PruneDeleter,
): Promise<PruneResult> {
  compileFilters(policy.filters);
  const result = { deleted: 0, reclaimed: 0 };
  for (;;) {
    options.signal?.throwIfAborted();
    const before = result.deleted;
    const satisfied = await prunePass(cm, policy, options, gone, deleter, result);
    if (satisfied || result.deleted === before) return result;
  }
}

/**
 * One pass of a policy: a census, then deletions, counted into `result`. Returns true when the
 * policy's space caps are met (a pass without caps never is: another pass looks again).
 */
async function prunePass(
  cm: ManagerContext,
  policy: PrunePolicy,
  options: PruneOptions,
  gone: Removed,
  deleter: PruneDeleter,
  result: { deleted: number; reclaimed: number },
): Promise<boolean> {
  const spaceMode = Boolean(policy.maxUsedSpace || policy.minFreeSpace || policy.reservedSpace);
  const census = await takeCensus(cm, policy, gone, spaceMode);
  const { candidates, children } = census;
  const ready = (c: Candidate): boolean => !children.get(c.id);
  if (!spaceMode) {
    // Everything that matches goes: depth first, so a freed parent goes while it is still in memory.
    const stack = [...candidates.values()].filter(ready);
    while (stack.length > 0) {
      options.signal?.throwIfAborted();
      const batch = stack.splice(Math.max(0, stack.length - BATCH));
      for (const cand of await deleteCandidates(batch, census, options, deleter, result)) {
        const parent = cand.parent;
        const next = parent === undefined ? undefined : candidates.get(parent);
        if (next && ready(next)) {
          candidates.delete(next.id);
          stack.push(next);
        }
      }
    }
    return false;
  }
  const disk = policy.minFreeSpace ? await (options.diskStat ?? (() => diskStatOf(options.root ?? '/')))() : { total: 0, free: 0 };
  const keep = keepBytes(census.total, disk, policy);
  let total = census.total;
  while (total > keep) {
    options.signal?.throwIfAborted();
    const sorted = sortForDeletion([...candidates.values()].filter(ready).map((c) => ({ c, lastUsedAt: c.lastUsedNs, usageCount: c.usageCount })));
    const chosen: Candidate[] = [];
    let projected = total;
    for (const { c } of sorted) {
      if (projected <= keep) break;
      chosen.push(c);
      projected -= c.size;
    }
    const done = await deleteCandidates(chosen, census, options, deleter, result);
    if (done.length === 0) break;
    for (const c of done) total -= c.size;
  }
  return total <= keep;
}

/** How many records one deletion step takes (their metadata writes share durable batches). */
const BATCH = 64;
