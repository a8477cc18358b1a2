/**
 * Errors of image import and export (`@buildcache/images`): bad archives are refused with one of
 * these before any layer is registered.
 */
import { BuildcacheError } from './base.js';

/** The input is not an image archive: not a tar, or neither an OCI layout nor a `docker save` archive. */
export class ErrNotAnImageArchive extends BuildcacheError { readonly code = 'ERR_NOT_AN_IMAGE_ARCHIVE'; }
/** The archive's index, manifest or config is malformed or names something unusable. */
export class ErrInvalidImage extends BuildcacheError { readonly code = 'ERR_INVALID_IMAGE'; }
/** A blob or layer file the archive's manifest names is not in the archive. */
export class ErrMissingBlob extends BuildcacheError { readonly code = 'ERR_MISSING_BLOB'; }
/** The config's `rootfs.diff_ids` do not match the layers (count or uncompressed digest). */
export class ErrDiffIDMismatch extends BuildcacheError { readonly code = 'ERR_DIFF_ID_MISMATCH'; }
/** A layer chain loops: a legacy `json` parent link cycle, or one layer listed twice. */
export class ErrLayerCycle extends BuildcacheError { readonly code = 'ERR_LAYER_CYCLE'; }
