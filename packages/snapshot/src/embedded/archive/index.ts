/** The embedded backend's layer applier and differ, and the tar/compression code under them. */
export { EmbeddedApplier } from './embedded-applier.js';
export type { ArchiveOptions } from './embedded-applier.js';
export { EmbeddedDiffer } from './embedded-differ.js';
export { applyLayer } from './apply.js';
export type { ApplyMode, ApplyOptions, ApplyResult } from './apply.js';
export { writeDiff } from './diff.js';
export type { DiffOptions, DiffResult, DiffSource } from './diff.js';
export { TarReader } from './tar-reader.js';
export type { TarReaderOptions, ByteStream } from './tar-reader.js';
export { TarWriter } from './tar-writer.js';
export type { TarWriteEntry } from './tar-writer.js';
export type { EntryType, TarHeader } from './tar-format.js';
export { parsePax } from './tar-format.js';
export { SparseMapReader, checkSparse, gnuSparseExtension, gnuSparseHeader, paxSparse } from './tar-sparse.js';
export type { PaxSparse, SparseMap } from './tar-sparse.js';
export { compressor, decompress, detectCompression, layerCompression } from './compression.js';
