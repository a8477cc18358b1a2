/**
 * The one way a record is deleted, whoever deletes it (release, finalize, getMutable, prune, open):
 * 1. tombstone its metadata durably; 2. owe a garbage collection (durably), unless its leases hold
 * nothing (a mutable record whose snapshot its twin's commit took); 3. delete its leases
 * `<id>-view`, `<id>-variants` and `<id>` by name, whether or not its metadata says they exist;
 * 4. clear its metadata. A crash anywhere leaves a tombstone that the next open finishes; a backend
 * failure in 3 leaves the record queued in `cm.purging`, retried by the next prune (or open).
 */
import pLimit from 'p-limit';
import type { ManagerContext } from './context.js';
import type { CacheRecord } from './records.js';
import type { RecordMetadata } from './record-metadata.js';
import { deleteRecordLeases } from './leases.js';

/** Step 1: marks the records deleted, durably (one group commit). */
export async function tombstone(mds: readonly RecordMetadata[]): Promise<void> {
  for (const md of mds) md.deleted = true;
  await Promise.all(mds.map((md) => md.commit()));
}

/**
 * Takes tombstoned records out of the manager's map; they are dead from now on, and queued in
 * `cm.purging` until `purge` has finished them.
 */
export function forgetRecords(cm: ManagerContext, recs: readonly CacheRecord[]): void {
  for (const r of recs) {
    r.dead = true;
    cm.records.delete(r.id);
    cm.purging.add(r.id);
  }
}

/** How many records' leases one backend call deletes (the embedded backend: one durable write). */
const LEASE_CHUNK = 64;
/** How many metadata clears one purge has in flight (their writes share LevelDB batches). */
const CLEAR_CONCURRENCY = 32;

/**
 * Steps 2–4 for tombstoned records `ids`: the leases of them all, then the metadata of those whose
 * leases went, cleared together (their writes share group commits). A backend failure does not
 * throw: the records stay queued in `cm.purging` (and tombstoned on disk) until a later call succeeds.
 * `freesData: false` says that their leases hold nothing, so that no collection is owed for them.
 */
export async function purge(cm: ManagerContext, ids: readonly string[], freesData = true): Promise<void> {
  if (ids.length === 0) return;
  for (const id of ids) cm.purging.add(id);
  if (freesData) await cm.gcDebt.owe();
  const leasesGone: string[] = [];
  for (let at = 0; at < ids.length; at += LEASE_CHUNK) {
    const chunk = ids.slice(at, at + LEASE_CHUNK);
    try {
      await deleteRecordLeases(cm.backend.leases, chunk);
      leasesGone.push(...chunk);
    } catch (err) {
      cm.logger.warn({ ids: chunk, err }, 'could not delete the leases of deleted records yet; retried at the next prune');
    }
  }
  const clears = pLimit(CLEAR_CONCURRENCY);
  await Promise.all(
    leasesGone.map((id) => clears(async () => {
      try {
        await cm.store.clear(id);
        cm.store.evict(id);
        cm.purging.delete(id);
      } catch (err) {
        cm.logger.warn({ id, err }, 'could not clear the metadata of a deleted record yet; retried at the next prune');
      }
    })),
  );
  // A collection that ran while the leases went may have cleared the debt: owe it again.
  if (freesData) await cm.gcDebt.owe();
}

/** Retries the deletions that a backend failure interrupted. */
export function retryPurges(cm: ManagerContext): Promise<void> {
  return purge(cm, [...cm.purging]);
}

/** Deletes records and releases their parents (`freesData` as in `purge`); the caller holds the manager lock. */
export async function deleteRecordsLocked(cm: ManagerContext, recs: readonly CacheRecord[], freesData = true): Promise<void> {
  await tombstone(recs.map((r) => r.md));
  forgetRecords(cm, recs);
  await purge(cm, recs.map((r) => r.id), freesData);
  await releaseParentsLocked(recs);
}

/** Drops the handles deleted records held on their parents; the caller holds the manager lock. */
export async function releaseParentsLocked(recs: readonly CacheRecord[]): Promise<void> {
  for (const r of recs) {
    r.equalImmutable = undefined;
    r.equalMutable = undefined;
    const parent = r.parent;
    r.parent = undefined;
    if (parent) await parent.releaseLocked();
  }
}
