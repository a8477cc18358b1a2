/** The containerd backend of `@buildcache/snapshot`: adapters over `@containerd/leases-ts`. */
export { ContainerdBackend, openContainerdBackend } from './backend.js';
export type { ContainerdBackendOptions, ContainerdSnapshotterName } from './backend.js';
export { ContainerdSnapshotter, ContainerdContentStore, ContainerdApplier, ContainerdDiffer } from './adapters.js';
