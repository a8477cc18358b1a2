/** Lazy remote layers: the layer manager, its layers, remote images and lazy pulls into the cache. */
export { LayerManager, type LayerManagerOptions } from './manager.js';
export { LazyLayer, type LayerState } from './layer.js';
export { SparseBlob, Priority, type BlobStats } from './sparse-blob.js';
export { RemoteImage, openRemoteImage, type ImageConfig } from './remote-image.js';
export { pullImage, type PulledImage } from './pull.js';
export { pushImage, type PushImageOptions, type PushedImage } from './push.js';
