export { LayerStore, Layer, MAX_DEPTH, type LayerSource, type LayerStoreOptions, type RegisterOptions, type RemovedLayer } from './store.js';
export type { LayerMeta } from './meta.js';
