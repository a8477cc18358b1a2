/**
 * @buildcache/server: `buildcache serve` — one process owns the cache and serves BuildKit's control
 * API (DiskUsage, Prune, ListWorkers, Info) and buildcache's own API over a unix socket — and
 * `connect(address)`, the client with the in-process cache's du, prune and build and the CLI's operations.
 */
export { Daemon, type ServeOptions, type ServeLimits } from './server.js';
export { connect, CacheClient, type Hold, type HoldOptions } from './client.js';
export type { RemoteBuildRequest, RemoteBuildResult } from './build-client.js';
export type { Operations, PullReport, PushReport, PulledLayer, DemoReport, DemoLayer } from './workspace.js';
export { DEFAULT_ADDRESS, socketPath } from './socket.js';
export { PROTO_ROOT } from './proto.js';
