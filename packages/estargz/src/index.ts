/** eStargz layers: footers, TOCs, verified chunk reads over range requests, and tar → eStargz conversion. */
export { type RangeReader, bufferRangeReader, fileRangeReader, checkRange } from './range-reader.js';
export { FOOTER_SIZE, LEGACY_FOOTER_SIZE, encodeFooter, parseFooter, type Footer } from './footer.js';
export {
  TOC_NAME,
  PREFETCH_LANDMARK,
  NO_PREFETCH_LANDMARK,
  type Toc,
  type TocEntry,
  type TocEntryType,
  type TocNode,
  type Chunk,
} from './toc.js';
export {
  EstargzReader,
  TOC_DIGEST_ANNOTATION,
  UNCOMPRESSED_SIZE_ANNOTATION,
  DEFAULT_MAX_TOC_SIZE,
  sha256,
  type OpenOptions,
  type EstargzStat,
} from './reader.js';
export { convertToEstargz, type ConvertOptions, type ConvertResult } from './convert.js';
