export { CacheManager, type CacheManagerOptions, type RefOptions } from './manager.js';
export { ImmutableRef, MutableRef, type MountOptions, type RefInfo } from './refs.js';
export type { BlobProvider, DescHandler, DescHandlers } from './context.js';
export type { RemoteOptions, RemotesOptions } from './blobs.js';
export { BLOB_FORMATS, parseBlobFormat, type BlobFormat } from './variants.js';
export { RECORD_TYPES, type RecordType } from './record-metadata.js';
export { chainID, chainIDs, blobChainID, newRecordId } from './ids.js';
export { FlightGroup } from './flight.js';
export type { UsageInfo } from './usage.js';
export { FILTER_FIELDS } from './usage.js';
export type { DiskUsageOptions } from './du.js';
export { keepBytes, sortForDeletion, diskStatOf, type PrunePolicy, type PruneOptions, type PruneResult, type DiskStat } from './prune.js';
export { defaultGCPolicy, type GCOptions } from './gc.js';
// Backends, re-exported so that users of the cache need no other import.
export { openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/snapshot';
export { openCache, DEFAULT_NAMESPACE, type OpenCacheOptions, type OpenCache } from './open.js';
export { CacheKeys, resultKey, INDEX_CACHE_KEY, type CacheKeyInfo, type RecordKeyOptions } from './keys.js';
export { DAEMON_FILE, writeDaemonMarker, removeDaemonMarker, runningDaemon } from './daemon-marker.js';
