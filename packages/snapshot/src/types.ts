/**
 * What the cache manager needs from a snapshot backend, with containerd's semantics. The containerd
 * backend and the embedded backend both implement these interfaces and pass one conformance suite.
 *
 * Numbers: sizes and offsets are JavaScript numbers, checked to be safe integers where they come
 * from the wire (2^53 bytes is 8 PiB).
 *
 * The data types (Mount, SnapshotInfo, Descriptor, …) are containerd's, as `@containerd/leases-ts`
 * defines them; the embedded backend uses the same ones.
 */
import type {
  ContentInfo,
  Descriptor,
  IngestStatus,
  Lease,
  LeaseResource,
  Mount,
  SnapshotInfo,
  Usage,
} from '@containerd/leases-ts';

export type { ContentInfo, Descriptor, IngestStatus, Lease, LeaseResource, Mount, SnapshotInfo, Usage };
export type { SnapshotKind } from '@containerd/leases-ts';

/** Options of calls that create objects: the lease that must hold what they create. */
export interface LeasedOptions {
  readonly lease?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** Filesystem snapshots (layers) with containerd's rules: prepare → active, commit → committed. */
export interface Snapshotter {
  /** The snapshotter's name as used in lease resources (`snapshots/<name>`): `overlayfs`, `native`. */
  readonly name: string;
  /** Creates an active (writable) snapshot `key` on top of committed `parent`. */
  prepare(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]>;
  /** Creates a read-only view `key` of committed `parent`. */
  view(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]>;
  /** Mounts of an active or view snapshot. */
  mounts(key: string): Promise<Mount[]>;
  /** Turns active snapshot `key` into committed snapshot `name`; `key` disappears. */
  commit(name: string, key: string, options?: LeasedOptions): Promise<void>;
  /** Removes a snapshot that has no children. Disk space is freed by garbage collection or at once. */
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  /** Changes labels: with `fieldpaths` (`labels.<k>`) only those, else all of them. */
  update(info: { name: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<SnapshotInfo>;
  usage(key: string): Promise<Usage>;
  /** Every snapshot, or those matching any of the containerd-syntax `filters`. */
  walk(filters?: readonly string[]): AsyncIterable<SnapshotInfo>;
}

/** An open ingest: write bytes at the current offset, then commit them as a verified blob. */
export interface ContentWriter {
  /** Bytes accepted so far (where a resumed write continues). */
  readonly offset: number;
  /** True when the expected blob was already stored: writes are ignored and commit succeeds at once. */
  readonly exists?: boolean;
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Verifies size and digest (when expected) and makes the blob visible; returns its digest.
   * A blob that already exists counts as success (and is added to the writer's lease).
   */
  commit(options?: { size?: number; expected?: string; labels?: Readonly<Record<string, string>> }): Promise<string>;
  /** Leaves the ingest in place, resumable from `offset`. */
  close(): Promise<void>;
}

/** Blobs addressed by digest, written through resumable ingests. */
export interface ContentStore {
  info(digest: string): Promise<ContentInfo>;
  update(info: { digest: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<ContentInfo>;
  walk(filters?: readonly string[]): AsyncIterable<ContentInfo>;
  delete(digest: string): Promise<void>;
  /** Reads `[offset, offset+length)` of a blob (to the end when length is omitted or 0). */
  read(digest: string, range?: { offset?: number; length?: number }): AsyncIterable<Uint8Array>;
  /** Opens (or resumes) the ingest `ref`. */
  writer(ref: string, options?: LeasedOptions & { expected?: string; total?: number }): Promise<ContentWriter>;
  status(ref: string): Promise<IngestStatus>;
  listStatuses(filters?: readonly string[]): Promise<IngestStatus[]>;
  abort(ref: string): Promise<void>;
}

/** Leases with containerd's rules (flat leases, expiry). */
export interface LeaseManager {
  create(id: string, labels?: Readonly<Record<string, string>>): Promise<Lease>;
  /** Deletes a lease; with `sync`, returns after a garbage collection has run. */
  delete(id: string, options?: { sync?: boolean }): Promise<void>;
  /**
   * Deletes those of leases `ids` that exist (a missing one is no error), for callers that drop
   * many at once: on the embedded backend in one durable write, on containerd one call each.
   * Rejects when some could not be deleted (those that were stay deleted).
   */
  deleteMany(ids: readonly string[]): Promise<void>;
  list(filters?: readonly string[]): Promise<Lease[]>;
  addResource(id: string, resource: LeaseResource): Promise<void>;
  deleteResource(id: string, resource: LeaseResource): Promise<void>;
  listResources(id: string): Promise<LeaseResource[]>;
}

/** Applies a layer blob from the content store onto mounts. */
export interface Applier {
  /**
   * Extracts the layer `desc` (tar, tar+gzip, tar+zstd) onto `mounts`; returns the applied
   * descriptor, whose digest is the diffID (sha256 of the uncompressed tar).
   */
  apply(desc: Descriptor, mounts: readonly Mount[], options?: { signal?: AbortSignal }): Promise<Descriptor>;
}

/** Compares two mount lists and stores the difference as a layer blob. */
export interface Differ {
  /**
   * Writes the changes from `lower` to `upper` as a layer blob into the content store and returns
   * its descriptor; compressed blobs carry the label and annotation `containerd.io/uncompressed`.
   */
  compare(
    lower: readonly Mount[],
    upper: readonly Mount[],
    options?: LeasedOptions & { mediaType?: string; ref?: string; signal?: AbortSignal },
  ): Promise<Descriptor>;
}

/** A mount list mounted on a directory. */
export interface ActiveMount {
  readonly target: string;
  unmount(): Promise<void>;
}

/** Mounts and unmounts mount lists on the local machine. */
export interface Mounter {
  /** Mounts on a fresh temp dir (or returns the source of a single rw bind mount without a syscall). */
  mount(mounts: readonly Mount[]): Promise<ActiveMount>;
  /** The read-only form of a mount list. */
  readonly(mounts: readonly Mount[]): Mount[];
}

/** What a garbage collection removed. */
export interface GCStats {
  /** Counts of what was removed, where the backend knows them (containerd's GC does not say). */
  readonly snapshotsRemoved?: number;
  readonly contentRemoved?: number;
  readonly leasesRemoved?: number;
  readonly durationMs: number;
}

/** Options of `Backend.garbageCollect`. */
export interface GarbageCollectOptions {
  /**
   * Labels for any lease the backend creates to run the collection (containerd's throwaway lease),
   * so that its caller can recognise and remove one a killed process left behind.
   */
  readonly leaseLabels?: Readonly<Record<string, string>>;
}

/** Everything the cache manager needs from one backend. */
export interface Backend {
  /** `containerd` or `embedded`. */
  readonly kind: string;
  readonly snapshotter: Snapshotter;
  readonly content: ContentStore;
  readonly leases: LeaseManager;
  readonly applier: Applier;
  readonly differ: Differ;
  readonly mounter: Mounter;
  /** Runs a full garbage collection now and frees disk space. */
  garbageCollect(options?: GarbageCollectOptions): Promise<GCStats>;
  close(): Promise<void>;
}
