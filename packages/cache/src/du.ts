/** Disk usage of the cache, streamed: one entry per record, sizes computed with bounded concurrency. */
import pLimit from 'p-limit';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { parseFilters, fieldsOf, type Filter } from '@buildcache/filters';
import type { ManagerContext } from './context.js';
import { recordSize } from './size.js';
import { FILTER_FIELDS, filterAdaptor, inUseSet, isRepresentative, usageOf, type UsageInfo } from './usage.js';
import type { CacheRecord } from './records.js';
import { loadOrClearLocked } from './load.js';
import { STATE_ITEM } from './gc-debt.js';

/** Options of `diskUsage()`. */
export interface DiskUsageOptions {
  /** containerd-syntax filters over id, type, description, parents, inuse, mutable, immutable, shared, private. */
  readonly filters?: readonly string[];
  /** Only records last used longer ago than this many milliseconds. */
  readonly ageLimitMs?: number;
  /** How many sizes are computed at once (default 8). */
  readonly concurrency?: number;
}

/** Parses filters and refuses fields that records do not have. */
export function compileFilters(filters: readonly string[] | undefined): Filter | undefined {
  if (!filters || filters.length === 0) return undefined;
  const filter = parseFilters(filters);
  for (const field of fieldsOf(filter)) {
    if (!(FILTER_FIELDS as readonly string[]).includes(field)) {
      throw new ErrInvalidArgument(`unknown filter field ${JSON.stringify(field)}; use one of ${FILTER_FIELDS.join(', ')}`);
    }
  }
  return filter;
}

const BATCH = 512;

/**
 * Records for du, in batches: the ones in memory once every record is loaded, else every stored
 * record in ID order, loaded batch by batch (so the first rows come before the last record loads).
 */
async function* recordBatches(cm: ManagerContext): AsyncGenerator<CacheRecord[]> {
  if (cm.allLoaded) {
    const all = await cm.mu(() => [...cm.records.values()]);
    for (let i = 0; i < all.length; i += BATCH) yield all.slice(i, i + BATCH);
    return;
  }
  let ids: string[] = [];
  const load = (batch: readonly string[]): Promise<CacheRecord[]> =>
    cm.mu(async () => {
      const out: CacheRecord[] = [];
      for (const id of batch) {
        const rec = await loadOrClearLocked(cm, id);
        if (rec) out.push(rec);
      }
      return out;
    });
  for await (const item of cm.store.all()) {
    if (item.id === STATE_ITEM) continue;
    ids.push(item.id);
    if (ids.length < BATCH) continue;
    yield await load(ids);
    ids = [];
  }
  yield await load(ids);
  cm.allLoaded = true;
}

/** Streams usage entries; unknown sizes are computed (and stored) on the way. */
export async function* diskUsage(cm: ManagerContext, options: DiskUsageOptions = {}): AsyncGenerator<UsageInfo> {
  const filter = compileFilters(options.filters);
  const now = cm.now();
  // A record not in memory has no handle, nor has a loaded record any on one that is not loaded
  // (loading a record loads its parents and its twin): what is in use is known before loading.
  const inUse = await cm.mu(() => inUseSet(cm.records.values()));
  const limit = pLimit(options.concurrency ?? 8);
  for await (const recs of recordBatches(cm)) {
    const entries: { rec: CacheRecord; info: UsageInfo }[] = [];
    for (const rec of recs) {
      if (!isRepresentative(rec)) continue;
      const info = usageOf(rec, inUse.has(rec));
      if (options.ageLimitMs !== undefined && info.lastUsedAt && info.lastUsedAt.getTime() > now - options.ageLimitMs) {
        continue;
      }
      if (filter && !filter.match(filterAdaptor(info))) continue;
      entries.push({ rec, info });
    }
    const sized = await Promise.all(
      entries.map(async ({ rec, info }) =>
        info.size >= 0 ? info : limit(async () => ({ ...info, size: await recordSize(rec).catch(() => 0) })),
      ),
    );
    yield* sized;
  }
}
