/**
 * Typed errors shared by every buildcache package. Each class has a stable `code`;
 * callers test with `instanceof` or `err.code`. Extra context (record ID, digest,
 * snapshot key, path, gRPC method) travels in `details`.
 */

import { BuildcacheError } from './base.js';

export * from './base.js';
export * from './registry.js';
export * from './estargz.js';
export * from './frontend.js';
export * from './images.js';

// --- containerd errdefs (also produced by the embedded backend) -------------------------

/** The named object (record, snapshot, lease, blob, ingest) does not exist. */
export class ErrNotFound extends BuildcacheError { readonly code = 'ERR_NOT_FOUND'; }
/** An object with that name already exists. */
export class ErrAlreadyExists extends BuildcacheError { readonly code = 'ERR_ALREADY_EXISTS'; }
/** The object is not in the state the operation needs (e.g. a parent with children). */
export class ErrFailedPrecondition extends BuildcacheError { readonly code = 'ERR_FAILED_PRECONDITION'; }
/** The request itself is malformed: bad digest, bad filter, bad option. */
export class ErrInvalidArgument extends BuildcacheError { readonly code = 'ERR_INVALID_ARGUMENT'; }
/** The service could not be reached or is locked for the moment; retrying may help. */
export class ErrUnavailable extends BuildcacheError { readonly code = 'ERR_UNAVAILABLE'; }
/** An offset or size lies outside the object. */
export class ErrOutOfRange extends BuildcacheError { readonly code = 'ERR_OUT_OF_RANGE'; }
/** The backend does not implement this operation. */
export class ErrNotImplemented extends BuildcacheError { readonly code = 'ERR_NOT_IMPLEMENTED'; }
/** The call's deadline passed before it completed. */
export class ErrDeadlineExceeded extends BuildcacheError { readonly code = 'ERR_DEADLINE_EXCEEDED'; }
/** The call was cancelled by its caller. */
export class ErrCanceled extends BuildcacheError { readonly code = 'ERR_CANCELED'; }
/** The caller lacks permission for the operation. */
export class ErrPermissionDenied extends BuildcacheError { readonly code = 'ERR_PERMISSION_DENIED'; }
/** A quota or message-size limit was hit. */
export class ErrResourceExhausted extends BuildcacheError { readonly code = 'ERR_RESOURCE_EXHAUSTED'; }
/** The operation was aborted, usually by a conflicting one. */
export class ErrAborted extends BuildcacheError { readonly code = 'ERR_ABORTED'; }
/** An error the server did not classify (gRPC UNKNOWN / INTERNAL / DATA_LOSS). */
export class ErrUnknown extends BuildcacheError { readonly code = 'ERR_UNKNOWN'; }

// --- store and cache errors ------------------------------------------------------------

/** The path exists but does not hold a buildcache store of the expected kind. */
export class ErrNotAStore extends BuildcacheError { readonly code = 'ERR_NOT_A_STORE'; }
/** The store is locked by another process. */
export class ErrStoreLocked extends BuildcacheError { readonly code = 'ERR_STORE_LOCKED'; }
/** The store, manager or client was closed before the call. */
export class ErrClosed extends BuildcacheError { readonly code = 'ERR_CLOSED'; }
/** The record or object is in use by a live handle and cannot be taken. */
export class ErrInUse extends BuildcacheError { readonly code = 'ERR_IN_USE'; }
/** A ref handle was used after `release()`. */
export class ErrReleased extends BuildcacheError { readonly code = 'ERR_RELEASED'; }
/** Stored data failed verification against its digest or size. */
export class ErrDigestMismatch extends BuildcacheError { readonly code = 'ERR_DIGEST_MISMATCH'; }
/** A layer entry would write outside its target, or is otherwise not allowed. */
export class ErrUnsafeEntry extends BuildcacheError { readonly code = 'ERR_UNSAFE_ENTRY'; }
/** A layer blob or tar stream is malformed or truncated. */
export class ErrCorruptLayer extends BuildcacheError { readonly code = 'ERR_CORRUPT_LAYER'; }
/** A ref has no blobs and was asked for them without permission to create them. */
export class ErrNoBlobs extends BuildcacheError { readonly code = 'ERR_NO_BLOBS'; }
/** A lazy record needs a descriptor handler (blob provider) that was not given. */
export class ErrNeedsRemoteProvider extends BuildcacheError { readonly code = 'ERR_NEEDS_REMOTE_PROVIDER'; }
/** A layer would sit deeper in its chain than the layer store allows (Docker's 125). */
export class ErrMaxDepthExceeded extends BuildcacheError { readonly code = 'ERR_MAX_DEPTH_EXCEEDED'; }
