export type * from './types.js';
export * from './labels.js';
export { LocalMounter, readonlyMount, bindSource, overlayDirs, overlayOptions, mountOne, unmount } from './mount.js';
export * from './containerd/index.js';
export * from './embedded/index.js';
export { compressor, decompress, detectCompression } from './embedded/archive/compression.js';
export { mountPointsUnder } from './mount-cleanup.js';
export { nowNs, nsToMs, msToNs, strictlyIncreasing } from './clock.js';
// The safe applier on a plain directory (the layer store applies a stream it also records).
export { applyLayer, type ApplyOptions, type ApplyResult } from './embedded/archive/index.js';
// The streaming tar reader (eStargz conversion indexes a tar with it).
export { TarReader, type TarHeader, type ByteStream } from './embedded/archive/index.js';
