/**
 * Disk usage of the cache, streamed from the metadata store in record ID order, 128 records at a
 * time, the next batch prepared while one streams (memory stays bounded): one entry per record,
 * sizes computed with bounded concurrency.
 */
import pLimit from 'p-limit';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { parseFilters, fieldsOf, type Filter } from '@buildcache/filters';
import type { ManagerContext } from './context.js';
import { FILTER_FIELDS, filterAdaptor, inUseSet, isHeld, isRepresentative, usageOf, usageOfMetadata, type UsageInfo } from './usage.js';
import type { CacheRecord } from './records.js';
import { StoredScan } from './stored.js';
import { unpin } from './residency.js';
import type { StorageItem } from '@buildcache/metadata';
import type { RecordMetadata } from './record-metadata.js';

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

/** One record's entry, with the record when it is in memory (pinned until the batch is done). */
interface Row {
  info: UsageInfo;
  readonly rec?: CacheRecord;
  /** The metadata of a record told from it (not in memory). */
  readonly md?: RecordMetadata;
}

/**
 * The rows of one batch of stored items: records in memory as they are, others from their metadata
 * where it tells them, the rest loaded (see `StoredScan`).
 */
async function rowsOf(scan: StoredScan, items: readonly StorageItem[], inUse: ReadonlySet<CacheRecord>): Promise<Row[]> {
  const rows: Row[] = [];
  await scan.visit(items, (md, rec, view) => {
    if (!rec) {
      if (view?.representative) rows.push({ info: usageOfMetadata(md, view.mutable, view.held), md });
      return;
    }
    if (!isRepresentative(rec)) return;
    rec.pins++;
    rows.push({ info: usageOf(rec, inUse.has(rec) || isHeld(rec)), rec });
  });
  return rows;
}

/** A batch ready to stream: its entries, and the records pinned until they are sent. */
interface Ready {
  readonly infos: readonly UsageInfo[];
  readonly pinned: readonly CacheRecord[];
}

/**
 * Streams usage entries, in record ID order; unknown sizes are computed (and stored) on the way.
 * The next batch is read, visited and sized while the one before streams out, so a reader does not
 * wait at each batch boundary for the store, the manager lock (e.g. behind a prune's deletion step)
 * or sizes.
 */
export async function* diskUsage(cm: ManagerContext, options: DiskUsageOptions = {}): AsyncGenerator<UsageInfo> {
  const filter = compileFilters(options.filters);
  const now = cm.now();
  // A record not in memory has no handle, nor has a loaded record any on one that is not loaded
  // (loading a record loads its parents and its twin): what is in use is known before loading.
  const inUse = await cm.mu(() => inUseSet(cm.records.values()));
  const limit = pLimit(options.concurrency ?? 8);
  const keep = (info: UsageInfo): boolean =>
    !(options.ageLimitMs !== undefined && info.lastUsedAt && info.lastUsedAt.getTime() > now - options.ageLimitMs) &&
    !(filter && !filter.match(filterAdaptor(info)));
  const scan = new StoredScan(cm);
  const batches = scan[Symbol.asyncIterator]();
  const prepareNext = async (): Promise<Ready | undefined> => {
    const next = await batches.next();
    if (next.done) return undefined;
    const rows = await rowsOf(scan, next.value, inUse);
    const pinned = rows.flatMap((r) => (r.rec ? [r.rec] : []));
    try {
      const kept = rows.filter((r) => keep(r.info));
      const unsized = kept.filter((row) => row.info.size < 0);
      const sizes = await scan.size(unsized, limit);
      for (const [i, row] of unsized.entries()) row.info = { ...row.info, size: sizes[i]! };
      return { infos: kept.map((row) => row.info), pinned };
    } catch (err) {
      await unpin(cm, pinned);
      throw err;
    } finally {
      await scan.dropUnsized();
    }
  };
  let ahead = prepareNext();
  try {
    for (let batch = await ahead; batch; batch = await ahead) {
      ahead = prepareNext();
      ahead.catch(() => undefined); // Awaited by the loop, or below when the reader stops early.
      try {
        yield* batch.infos;
      } finally {
        await unpin(cm, batch.pinned);
      }
    }
  } finally {
    // A reader that stopped early leaves a batch read ahead: let go of it and of the scan.
    const unsent = await ahead.catch(() => undefined);
    if (unsent) await unpin(cm, unsent.pinned);
    await batches.return(undefined);
  }
}
