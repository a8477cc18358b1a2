/**
 * @containerd/leases-ts: a typed containerd gRPC client (snapshots, content, leases, diff,
 * namespaces, version, introspection) whose errors are `@buildcache/errdefs` classes.
 */
export { Client, DEFAULT_TIMEOUT_MS, DEFAULT_STREAM_TIMEOUT_MS } from './client.js';
export type { ClientOptions } from './client.js';
export { LeasesService } from './leases.js';
export { SnapshotsService } from './snapshots.js';
export type { SnapshotCreateOptions } from './snapshots.js';
export { ContentService } from './content.js';
export type { ReadRange } from './content.js';
export { ContentWriter, MAX_WRITE_CHUNK } from './content-writer.js';
export type { WriterOptions, CommitOptions } from './content-writer.js';
export { DiffService } from './diff.js';
export type { ApplyOptions, DiffOptions } from './diff.js';
export { NamespacesService } from './namespaces.js';
export { VersionService, IntrospectionService } from './introspection.js';
export { MAX_MESSAGE_SIZE } from './transport.js';
export type { ConnectionOptions } from './transport.js';
export { PROTO_ROOT, protoLoader } from './proto.js';
export { fromGrpc, grpcCodeOf, checkLabels } from './errors.js';
export type { CallContext } from './errors.js';
export type * from './types.js';
