/**
 * @buildcache/server: `buildcache serve` — one process owns the cache and serves BuildKit's control
 * API (DiskUsage, Prune, ListWorkers, Info) and buildcache's own API over a unix socket — and
 * `connect(address)`, the client with the in-process cache's du and prune.
 */
export { Daemon, type ServeOptions, type ServeLimits } from './server.js';
export { connect, CacheClient, type Hold, type HoldOptions, type Operation } from './client.js';
export { DEFAULT_ADDRESS, socketPath } from './socket.js';
export { OPERATIONS } from './cache-service.js';
export { PROTO_ROOT } from './proto.js';
