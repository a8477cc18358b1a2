/**
 * Errors of the registry client (`@buildcache/registry`). Missing manifests/blobs reuse
 * `ErrNotFound`, outages `ErrUnavailable`, bad content `ErrDigestMismatch`; their `details`
 * carry `reference` (and `digest`, HTTP `status`, the registry's error `registryCode`).
 */
import { BuildcacheError } from './base.js';

/** The registry refused the credentials (or none were available) for the reference. */
export class ErrUnauthorized extends BuildcacheError { readonly code = 'ERR_UNAUTHORIZED'; }
/** The registry answered in a way the distribution protocol does not allow (bad range, unknown manifest type, malformed JSON). */
export class ErrRegistryResponse extends BuildcacheError { readonly code = 'ERR_REGISTRY_RESPONSE'; }
