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
// The streaming tar reader (eStargz conversion indexes a tar with it; the layer store reads diffs with it),
// and the deterministic differ on two directory trees (the layer store's read-write layers).
export { TarReader, writeDiff, type TarHeader, type ByteStream, type DiffSource } from './embedded/archive/index.js';
// Tar header pieces the layer store's tar-split recorder parses with (PAX records, sparse maps).
export {
  parsePax,
  SparseMapReader,
  checkSparse,
  gnuSparseExtension,
  gnuSparseHeader,
  paxSparse,
  type PaxSparse,
  type SparseMap,
} from './embedded/archive/index.js';
