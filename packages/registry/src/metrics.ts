/** The registry client's metrics, on the shared `@buildcache/metrics` registry. */
import { counter, histogram } from '@buildcache/metrics';

/** Why bytes are fetched: a reader waits on them, a prefetcher guesses, or background copying. */
export type FetchPurpose = 'foreground' | 'prefetch' | 'background';

/** Blob bytes received from registries (full and range GETs), by purpose. */
export const fetchedBytes = counter<'purpose'>({
  name: 'buildcache_registry_fetched_bytes_total',
  help: 'Blob bytes received from registries, by purpose (foreground, prefetch, background)',
  labelNames: ['purpose'],
});

/** Range GETs sent (each HTTP request, resumptions included), by purpose. */
export const rangeRequests = counter<'purpose'>({
  name: 'buildcache_registry_range_requests_total',
  help: 'Blob range requests sent to registries, by purpose',
  labelNames: ['purpose'],
});

/** Seconds from a resolve call to the platform manifest in hand (failures excluded). */
export const resolveSeconds = histogram({
  name: 'buildcache_registry_resolve_seconds',
  help: 'Latency of resolving an image reference to its platform manifest',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
});

/** Blob bytes sent to registries (mounted and skipped blobs excluded). */
export const pushedBytes = counter({
  name: 'buildcache_registry_pushed_bytes_total',
  help: 'Blob bytes uploaded to registries',
});

/** Requests repeated after a 5xx/429 answer, a broken connection or a dropped blob stream. */
export const registryRetries = counter({
  name: 'buildcache_registry_retries_total',
  help: 'Registry requests retried after a server error or a connection failure',
});
