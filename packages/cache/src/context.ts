/** What records and refs share with their manager: the backend, the store, the locks, the clock. */
import type { Logger } from 'pino';
import type { MetadataStore } from '@buildcache/metadata';
import type { Backend, Descriptor } from '@buildcache/snapshot';
import type { CacheRecord } from './records.js';
import type { RecordMetadata } from './record-metadata.js';
import type { GCDebt } from './gc-debt.js';
import type { SerialLock } from './serial.js';

/** Fetches a blob that is not in the content store yet (a lazy layer's source). */
export interface BlobProvider {
  /** Streams the blob's bytes; the manager verifies digest and size. */
  fetch(desc: Descriptor, options: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>;
}

/** How to reach one lazy blob: its provider, and annotations to keep with it. */
export interface DescHandler {
  readonly provider: BlobProvider;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Descriptor handlers by blob digest. */
export type DescHandlers = ReadonlyMap<string, DescHandler>;

/** No descriptor handlers. */
export const NO_HANDLERS: DescHandlers = new Map();

/** Shared state of one open manager. */
export interface ManagerContext {
  /** The backend, with every lease it creates labelled with `owner` (see owner.ts). */
  readonly backend: Backend;
  /** This cache's owner ID, kept in its metadata. */
  readonly owner: string;
  readonly store: MetadataStore;
  readonly logger: Logger;
  /** Guards `records` (and record creation/removal); never held across size, extract, diff or apply. */
  readonly mu: SerialLock;
  /** The records in memory: loaded on first use, evicted when nothing needs them (residency.ts). */
  readonly records: Map<string, CacheRecord>;
  /** Milliseconds since the epoch; injectable for tests. */
  now(): number;
  /** Nanoseconds since the epoch (`now` when one is injected), strictly increasing: last-used stamps. */
  nowNs(): bigint;
  /** Called after operations that change the cache (automatic GC listens). */
  changed(): void;
  /**
   * Commits the record's queued metadata soon, merged with other deferred commits into one durable
   * batch; for advisory fields (last-used time, usage count) whose loss in a crash is harmless.
   */
  deferCommit(md: RecordMetadata): void;
  /** Whether a garbage collection is owed; `owe()` before deleting any lease. */
  readonly gcDebt: GCDebt;
  /** Tombstoned records whose leases a backend failure kept; the next prune retries them. */
  readonly purging: Set<string>;
}
