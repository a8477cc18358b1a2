/**
 * @buildcache/metadata — the LevelDB store that cache records live in: items of JSON values,
 * atomic durable commits (group commit), secondary indexes and external raw values.
 */
export { MetadataStore, type MetadataStoreOptions, type SearchOptions } from './store.js';
export { StorageItem, type SetOptions } from './storage-item.js';
export type { WriteStats } from './batch-writer.js';
export type { JsonValue } from './values.js';
export { FORMAT_VERSION, MAX_NAME_LENGTH } from './keys.js';
