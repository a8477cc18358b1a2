/** Synthetic cache records written straight into a metadata store, for scale tests and benchmarks. */
import pLimit from 'p-limit';
import { pino } from 'pino';
import { MetadataStore } from '@buildcache/metadata';

/** The ID of synthetic record `i`. */
export const syntheticId = (i: number): string => `synthetic${String(i).padStart(8, '0')}`;

/** The size synthetic record `i` reports. */
export const syntheticSize = (i: number): number => 4096 + (i % 100);

/** What a test may choose for synthetic record `i` instead of the defaults. */
export interface SyntheticShape {
  /** Milliseconds since the epoch. */
  readonly lastUsedAt?: number;
  readonly size?: number;
  /** `internal`, `frontend`, … (default: none, i.e. regular). */
  readonly recordType?: string;
  /** A chain ID, indexed as the cache indexes it (`chainid:<id>`; default: none). */
  readonly chainId?: string;
}

/**
 * Writes `count` finalized records (sizes known, chains of ten, no snapshots or leases behind them)
 * into the store at `path`, which must not be open elsewhere.
 */
export async function writeSyntheticRecords(path: string, count: number, shape?: (i: number) => SyntheticShape): Promise<void> {
  const store = await MetadataStore.open(path, { logger: pino({ level: 'silent' }) });
  const limit = pLimit(256);
  const now = Date.now();
  try {
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        limit(async () => {
          const item = await store.get(syntheticId(i));
          const chosen = shape?.(i) ?? {};
          item.set('cache.createdAt', now - i * 1000);
          item.set('cache.lastUsedAt', chosen.lastUsedAt ?? now - i * 500);
          item.set('cache.usageCount', i % 7);
          item.set('snapshot.committed', true);
          item.set('snapshot.size', chosen.size ?? syntheticSize(i));
          item.set('cache.description', `synthetic record ${i}`);
          if (chosen.recordType) item.set('cache.recordType', chosen.recordType);
          if (chosen.chainId) item.set('cache.chainID', chosen.chainId, { index: `chainid:${chosen.chainId}` });
          if (i % 10 !== 0) item.set('cache.parent', syntheticId(i - 1));
          await item.commit();
        }),
      ),
    );
    // the records are in the current layout (packages/cache/src/migrate.ts): open has nothing to migrate
    const state = await store.get('.buildcache-state');
    state.set('records.layout', 2);
    await state.commit();
  } finally {
    await store.close();
  }
}
