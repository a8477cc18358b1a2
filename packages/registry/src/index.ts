/**
 * @buildcache/registry: an OCI distribution (Docker Registry v2) client on undici — references,
 * manifest resolution by platform, verified blob streams and range reads, blob and manifest
 * pushes, Basic/Bearer auth from Docker's config, retries, typed errors and metrics.
 */
export { RegistryClient } from './client.js';
export type { RegistryClientOptions, FetchedManifest, ResolvedImage, RemoteBlob } from './client.js';
export type { ReadOptions } from './blobs.js';
export type { BlobSource, PushBlobOptions, PushedBlob } from './push.js';
export { parseReference, formatReference, toReference, apiHost, isLoopback, DOCKER_HUB } from './reference.js';
export type { Reference } from './reference.js';
export { MediaType, MANIFEST_TYPES, isIndexType, normalizePlatform, defaultPlatform, formatPlatform, selectPlatform } from './manifest.js';
export type { Descriptor, ImageManifest, ImageIndex, Platform } from './manifest.js';
export { dockerConfigCredentials } from './credentials.js';
export type { Credentials, CredentialsProvider } from './credentials.js';
export { parseChallenge, repositoryScope } from './auth.js';
export type { Challenge } from './auth.js';
export { assertDigest, digestOf } from './digest.js';
export { fetchedBytes, rangeRequests, resolveSeconds, pushedBytes, registryRetries } from './metrics.js';
export type { FetchPurpose } from './metrics.js';
