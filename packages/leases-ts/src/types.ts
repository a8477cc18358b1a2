/**
 * The plain camelCase values the client hands out and takes in: containerd's data types.
 * `@buildcache/snapshot` uses these same types in its `Backend` contract.
 *
 * Numbers: every int64 on the wire (sizes, offsets, inode counts) is a JS `number`. Values coming
 * from the daemon are checked to be safe integers (|n| ≤ 2^53−1) and a value outside that range
 * fails with `ErrOutOfRange`; values going to the daemon must be non-negative safe integers or the
 * call fails with `ErrInvalidArgument` before anything is sent.
 *
 * Times: timestamps are `Date`s; a timestamp the daemon left unset (or Go's zero time) becomes
 * `new Date(0)`. Snapshot times also come whole, as `bigint` nanoseconds since the Unix epoch
 * (`createdAtNs`, `updatedAtNs`; 0n when unset): a `Date` holds only milliseconds.
 */

/** String labels of an object. */
export type Labels = Readonly<Record<string, string>>;

/** A mount as containerd describes it: `mount -t type source target -o options.join(',')`. */
export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly target?: string;
  readonly options: readonly string[];
}

/** A snapshot's kind. */
export type SnapshotKind = 'view' | 'active' | 'committed';

/** What a snapshotter knows of one snapshot. */
export interface SnapshotInfo {
  readonly name: string;
  /** Name of the committed parent, or undefined for a base snapshot. */
  readonly parent?: string;
  readonly kind: SnapshotKind;
  readonly labels: Labels;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** `createdAt` in nanoseconds since the Unix epoch. */
  readonly createdAtNs: bigint;
  /** `updatedAt` in nanoseconds since the Unix epoch. */
  readonly updatedAtNs: bigint;
}

/** Disk usage of one snapshot's own layer. */
export interface Usage {
  readonly size: number;
  readonly inodes: number;
}

/** An OCI content descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Labels;
  /** Where a non-distributable layer can be downloaded from (OCI descriptor `urls`; not sent to containerd). */
  readonly urls?: readonly string[];
}

/** What the content store knows of one blob. */
export interface ContentInfo {
  readonly digest: string;
  readonly size: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly labels: Labels;
}

/** Progress of an unfinished write (ingest). */
export interface IngestStatus {
  readonly ref: string;
  readonly offset: number;
  readonly total: number;
  /** The expected digest; containerd 1.6 leaves it empty, so it is often undefined. */
  readonly expected?: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

/** A lease: a GC root that holds the resources added to it. */
export interface Lease {
  readonly id: string;
  readonly createdAt: Date;
  readonly labels: Labels;
}

/** A resource held by a lease: `content` (digest), `ingests` (ref) or `snapshots/<snapshotter>` (key). */
export interface LeaseResource {
  readonly id: string;
  readonly type: string;
}

/** A containerd namespace. */
export interface Namespace {
  readonly name: string;
  readonly labels: Labels;
}

/** The daemon's version. */
export interface VersionInfo {
  readonly version: string;
  readonly revision: string;
}

/** An OCI platform. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
  readonly osVersion?: string;
  readonly osFeatures?: readonly string[];
}

/** One plugin of the daemon, as introspection reports it. */
export interface PluginInfo {
  readonly type: string;
  readonly id: string;
  readonly requires: readonly string[];
  readonly platforms: readonly Platform[];
  readonly exports: Labels;
  readonly capabilities: readonly string[];
  /** Why the plugin failed to initialise (it is then unusable), or undefined when it loaded. */
  readonly initError?: { readonly code: number; readonly message: string };
}

/** The daemon process, as introspection reports it (pid/pidns from 1.6.25/1.7, else undefined). */
export interface ServerInfo {
  readonly uuid: string;
  readonly pid?: number;
  readonly pidns?: number;
  readonly deprecations: readonly { readonly id: string; readonly message: string; readonly lastOccurrence?: Date }[];
}

/** Options every call takes. */
export interface CallOptions {
  /** Deadline of this call in milliseconds (0 or Infinity: none). Defaults to the client's. */
  readonly timeoutMs?: number;
  /** Cancels the call; it then fails with `ErrCanceled`. */
  readonly signal?: AbortSignal;
  /** Runs this call under this lease (overrides the client view's lease). */
  readonly lease?: string;
}
