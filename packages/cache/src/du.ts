/** Disk usage of the cache, streamed: one entry per record, sizes computed with bounded concurrency. */
import pLimit from 'p-limit';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { parseFilters, fieldsOf, type Filter } from '@buildcache/filters';
import type { ManagerContext } from './context.js';
import { recordSize } from './size.js';
import { FILTER_FIELDS, filterAdaptor, inUseSet, isRepresentative, usageOf, type UsageInfo } from './usage.js';
import type { CacheRecord } from './records.js';
import { loadAllLocked } from './load.js';

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

/** Streams usage entries; unknown sizes are computed (and stored) on the way. */
export async function* diskUsage(cm: ManagerContext, options: DiskUsageOptions = {}): AsyncGenerator<UsageInfo> {
  const filter = compileFilters(options.filters);
  const now = cm.now();
  const entries = await cm.mu(async () => {
    await loadAllLocked(cm);
    const inUse = inUseSet(cm.records.values());
    const out: { rec: CacheRecord; info: UsageInfo }[] = [];
    for (const rec of cm.records.values()) {
      if (!isRepresentative(rec)) continue;
      const info = usageOf(rec, inUse.has(rec));
      if (options.ageLimitMs !== undefined && info.lastUsedAt && info.lastUsedAt.getTime() > now - options.ageLimitMs) {
        continue;
      }
      if (filter && !filter.match(filterAdaptor(info))) continue;
      out.push({ rec, info });
    }
    return out;
  });
  const limit = pLimit(options.concurrency ?? 8);
  for (let i = 0; i < entries.length; i += BATCH) {
    const batch = entries.slice(i, i + BATCH);
    const sized = await Promise.all(
      batch.map(async ({ rec, info }) =>
        info.size >= 0 ? info : limit(async () => ({ ...info, size: await recordSize(rec).catch(() => 0) })),
      ),
    );
    yield* sized;
  }
}
