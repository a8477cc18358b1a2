export { LayerStore, Layer, MAX_DEPTH, HOLDER, type LayerSource, type LayerStoreOptions, type RegisterOptions, type RemovedLayer } from './store.js';
export { RWLayer, type CreateRWLayerOptions } from './rw-layer.js';
export { setupInitLayer, INIT_LAYER_ENTRIES } from './init-layer.js';
export type { Change } from './diff-stream.js';
export type { LayerMeta, MountMeta } from './meta.js';
