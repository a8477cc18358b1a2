export { ImageStore, type ImageStoreOptions, type ImageInfo, type ImportOptions, type ImportEvent, type ResolvedImage, type ImageConfigJSON } from './store.js';
export type { ExportFormat } from './export.js';
export type { ArchiveSource } from './archive.js';
export { fullName, familiarName, splitName } from './names.js';
