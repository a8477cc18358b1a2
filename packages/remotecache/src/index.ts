/**
 * @buildcache/remotecache: a build's cache keys and layer blobs shared through an OCI registry or
 * an OCI layout directory, in BuildKit's cache format (`--cache-to` / `--cache-from`). This entry
 * loads no registry module; the registry's store is `@buildcache/remotecache/registry`.
 */
export { parseConfig, marshalConfig, CacheConfigError, MEDIA_CACHE_CONFIG, MAX_CONFIG_BYTES } from './config.js';
export type { CacheConfig, ConfigEntry, ExportStep } from './config.js';
export { exportCache, MEDIA_OCI_MANIFEST, ANNOTATION_CREATED } from './export.js';
export type { ExportOptions, ExportedCache, StepResult } from './export.js';
export { importCache, mergeImports } from './import.js';
export type { ImportedCache, ImportOptions } from './import.js';
export { LocalStore } from './stores.js';
export type { CacheStore, BlobBytes } from './stores.js';
export { checkCacheSpec, parseCacheSpec } from './spec.js';
export type { CacheSpec, CacheSpecFields } from './spec.js';
