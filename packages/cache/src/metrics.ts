/** The cache manager's metrics, on the shared `@buildcache/metrics` registry. */
import { counter } from '@buildcache/metrics';

/** Records created: `mutable` by `new()`, `blob` (lazy, from a layer blob) by `getByBlob()`. */
export const recordsCreated = counter<'kind'>({
  name: 'buildcache_cache_records_created_total',
  help: 'Cache records created, by kind (mutable: new(); blob: getByBlob())',
  labelNames: ['kind'],
});

/** Records deleted by prune (dry runs excluded). */
export const pruneDeleted = counter({
  name: 'buildcache_cache_prune_deleted_total',
  help: 'Cache records deleted by prune',
});

/** Bytes reclaimed by prune (dry runs excluded). */
export const pruneReclaimedBytes = counter({
  name: 'buildcache_cache_prune_reclaimed_bytes_total',
  help: 'Bytes of cache records deleted by prune',
});
