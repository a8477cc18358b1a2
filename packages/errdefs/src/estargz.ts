/**
 * Errors of eStargz layers (footer, TOC, chunks) and of lazily pulled remote layers. Each names the
 * blob (and entry or offset) involved; they are raised before any of the layer's data is applied.
 */
import { BuildcacheError } from './base.js';

/** The blob has neither an eStargz (51-byte) nor a legacy stargz (47-byte) footer. */
export class ErrNotEstargz extends BuildcacheError { readonly code = 'ERR_NOT_ESTARGZ'; }
/** The footer is malformed or points outside the blob. */
export class ErrEstargzFooter extends BuildcacheError { readonly code = 'ERR_ESTARGZ_FOOTER'; }
/** The TOC is not gzip, not a `stargz.index.json` tar entry, not JSON, or breaks the TOC schema. */
export class ErrEstargzToc extends BuildcacheError { readonly code = 'ERR_ESTARGZ_TOC'; }
/** The TOC (compressed or not) is larger than the configured limit. */
export class ErrEstargzTocTooLarge extends BuildcacheError { readonly code = 'ERR_ESTARGZ_TOC_TOO_LARGE'; }
/** A TOC entry names a path outside the layer (`..` or an absolute name). */
export class ErrEstargzUnsafeEntry extends BuildcacheError { readonly code = 'ERR_ESTARGZ_UNSAFE_ENTRY'; }
/** The TOC digest differs from the layer's `containerd.io/snapshot/stargz/toc.digest` annotation. */
export class ErrEstargzTocDigest extends BuildcacheError { readonly code = 'ERR_ESTARGZ_TOC_DIGEST'; }
/** Verification was asked for but the layer has no TOC digest annotation. */
export class ErrEstargzUnverified extends BuildcacheError { readonly code = 'ERR_ESTARGZ_UNVERIFIED'; }
/** A chunk's bytes do not match its `chunkDigest` (or the file's `digest`). */
export class ErrEstargzChunkDigest extends BuildcacheError { readonly code = 'ERR_ESTARGZ_CHUNK_DIGEST'; }
