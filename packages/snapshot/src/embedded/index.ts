/** The embedded (daemon-less) backend. */
export { openEmbeddedBackend } from './backend.js';
export type { EmbeddedBackend, EmbeddedBackendOptions } from './backend.js';
export { EmbeddedSnapshotter } from './snapshotter.js';
export { EmbeddedContentStore } from './content.js';
export { EmbeddedLeaseManager } from './leases.js';
export { UNLEASED_INGEST_TTL_MS } from './content.js';
