/**
 * @buildcache/contenthash — content checksums of paths in cache records and in build contexts on
 * the host (BuildKit's cache/contenthash): the cache keys of COPY and ADD.
 */
export { checksum, checksumDir, CHECKSUMS_KEY, type ChecksumOptions, type ChecksumDirOptions } from './checksum.js';
export { PatternMatcher, parseDockerignore, readDockerignore } from './patterns.js';
export { EMPTY_DIGEST } from './header.js';
