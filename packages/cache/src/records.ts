/**
 * A cache record: the in-memory state of one entry of the cache (handles, parent, the record it
 * shares data with) over its persisted metadata. Records are created by the manager and deleted
 * only through deletion.ts; callers only see refs.
 */
import { ErrNotFound, ErrAlreadyExists } from '@buildcache/errdefs';
import type { Descriptor, Mount } from '@buildcache/snapshot';
import { FlightGroup } from './flight.js';
import { serialLock, type SerialLock } from './serial.js';
import type { ManagerContext } from './context.js';
import { SIZE_UNKNOWN, type RecordMetadata } from './record-metadata.js';
import { deleteLease, ensureFlatLease, viewLeaseId, viewSnapshotKey, LABEL_TEMPORARY } from './leases.js';
import { deleteRecordsLocked } from './deletion.js';
import type { ImmutableRef } from './refs.js';

/** A handle on a record (a ref); held in `record.refs` while alive. */
export interface Handle {
  readonly triggerLastUsed: boolean;
}

/** One cache record. */
export class CacheRecord {
  /** Live handles: user refs, children's parent refs, and the link from an equal immutable. */
  readonly refs = new Set<Handle>();
  /** The handle this record holds on its parent. */
  parent: ImmutableRef | undefined;
  /** Immutable side: the mutable record whose snapshot holds this record's data until finalized. */
  equalMutable: CacheRecord | undefined;
  /** Mutable side: the immutable record committed from it. */
  equalImmutable: CacheRecord | undefined;
  /** The handle by which an equal immutable holds this mutable record. */
  linkHandle: Handle | undefined;
  /** Set once the record is being deleted; dead records are invisible. */
  dead = false;
  /** Cached mounts of the read-only view of an immutable record. */
  viewMounts: Mount[] | undefined;
  readonly sizeFlight = new FlightGroup<number>();
  readonly blobFlight = new FlightGroup<void>();
  readonly variantFlight = new FlightGroup<Descriptor>();
  readonly extractFlight = new FlightGroup<void>();
  /** How many du or prune passes look at this record outside the manager lock (it stays in memory meanwhile). */
  pins = 0;

  /** Made on first use (most loaded records are never locked). */
  #lock: SerialLock | undefined;

  constructor(
    readonly cm: ManagerContext,
    readonly md: RecordMetadata,
    public mutable: boolean,
    /** The lock of the record this one shares data with (an equal immutable takes its mutable's). */
    sharedLock?: SerialLock,
  ) {
    this.#lock = sharedLock;
  }

  /** Serialises changes of the record's state; shared by records that share data (a mutable and its equal immutable). */
  get lock(): SerialLock {
    return (this.#lock ??= serialLock());
  }

  get id(): string {
    return this.md.id;
  }

  /** The snapshot that holds this record's data now. */
  get dataSnapshotID(): string {
    return this.equalMutable ? this.equalMutable.md.snapshotID : this.md.snapshotID;
  }

  isDead(): boolean {
    return this.dead || this.equalMutable?.dead === true || this.equalImmutable?.dead === true;
  }

  /** Whether size, blob, variant or extraction work is in progress. */
  get busy(): boolean {
    return this.sizeFlight.size + this.blobFlight.size + this.variantFlight.size + this.extractFlight.size > 0;
  }

  /** Whether a live handle other than internal links exists. */
  get inUse(): boolean {
    return this.refs.size > 0;
  }

  /**
   * Commits the shared mutable snapshot into this record's own snapshot and drops the mutable
   * record. Takes the record lock; a no-op for records already finalized.
   */
  async finalize(): Promise<void> {
    const dropped = await this.lock(async () => {
      const mutable = this.equalMutable;
      if (!mutable) return undefined;
      const { snapshotter, leases } = this.cm.backend;
      await ensureFlatLease(leases, this.id, this.id);
      try {
        await snapshotter.commit(this.md.snapshotID, mutable.md.snapshotID, { lease: this.id });
      } catch (err) {
        // A crash after the commit and before the metadata update left it committed already.
        if (!(err instanceof ErrAlreadyExists)) throw err;
      }
      mutable.dead = true;
      this.md.equalMutable = undefined;
      this.md.size = SIZE_UNKNOWN;
      await this.md.commit();
      this.equalMutable = undefined;
      mutable.equalImmutable = undefined;
      mutable.linkHandle = undefined;
      mutable.refs.clear();
      return mutable;
    });
    // Lock order is manager lock, then record lock: remove the mutable record after letting go.
    // Its lease held only the snapshot the commit took: deleting it frees no data.
    if (dropped) await this.cm.mu(() => deleteRecordsLocked(this.cm, [dropped], false));
  }

  /** Stamps last-used time and usage count (written with the next commit, or within a second). */
  updateLastUsed(): void {
    this.md.usageCount = this.md.usageCount + 1;
    this.md.lastUsedNs = this.cm.nowNs();
    this.cm.deferCommit(this.md);
  }

  /** Mounts of the read-only view of this (immutable, finalized, extracted) record. */
  async viewOf(): Promise<Mount[]> {
    if (this.viewMounts) return this.viewMounts;
    const { snapshotter, leases } = this.cm.backend;
    const leaseId = viewLeaseId(this.id);
    await ensureFlatLease(leases, leaseId, this.id, { [LABEL_TEMPORARY]: new Date().toISOString() });
    const key = viewSnapshotKey(this.md.snapshotID);
    let mounts: Mount[];
    try {
      mounts = await snapshotter.view(key, this.md.snapshotID, { lease: leaseId });
    } catch (err) {
      if (!(err instanceof ErrAlreadyExists)) throw err;
      mounts = await snapshotter.mounts(key);
    }
    this.viewMounts = mounts;
    return mounts;
  }

  /** Drops the view (when the last handle goes). */
  async dropView(): Promise<void> {
    if (!this.viewMounts) return;
    this.viewMounts = undefined;
    const { snapshotter } = this.cm.backend;
    try {
      await snapshotter.remove(viewSnapshotKey(this.md.snapshotID));
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
    }
    await deleteLease(this.cm.backend.leases, viewLeaseId(this.id));
  }
}
