/** Lazy remote layers: the layer manager, its layers and their local sparse copies. */
export { LayerManager, type LayerManagerOptions } from './manager.js';
export { LazyLayer, type LayerState } from './layer.js';
export { SparseBlob, Priority, type BlobStats } from './sparse-blob.js';
