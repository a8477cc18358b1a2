/** The lazy layers' metrics, on the shared `@buildcache/metrics` registry. */
import { counter } from '@buildcache/metrics';

/** Reads of lazy blobs: `local` when every byte was already fetched (a cache hit), else `remote`. */
export const lazyReads = counter<'source'>({
  name: 'buildcache_lazy_reads_total',
  help: 'Reads of lazily fetched blobs, by where their bytes came from (local: cache hit; remote: fetched)',
  labelNames: ['source'],
});
