/**
 * The leases a cache record owns (all labelled with the cache's owner, see owner.ts): `<id>` (flat, holds its snapshot and blob), `<id>-view` (flat and
 * temporary, holds read-only views), `<id>-variants` (not flat, so that the gc.ref labels between a
 * blob and its compression variants are followed), and random temporary leases for work in progress.
 */
import { randomBytes } from 'node:crypto';
import { ErrAlreadyExists } from '@buildcache/errdefs';
import { LABEL_GC_EXPIRE, LABEL_GC_FLAT, type LeaseManager } from '@buildcache/snapshot';

/** Label naming the record a lease belongs to. */
export const LABEL_RECORD = 'buildcache/record';
/** Label marking a lease that is removed when the manager opens. */
export const LABEL_TEMPORARY = 'buildcache/lease.temporary';

/** Lease ID of a record's view lease. */
export const viewLeaseId = (id: string): string => `${id}-view`;
/** Lease ID of a record's compression-variants lease. */
export const variantsLeaseId = (id: string): string => `${id}-variants`;
/** Snapshot key of a record's read-only view. */
export const viewSnapshotKey = (snapshotID: string): string => `${snapshotID}-view`;

/** The record a lease ID belongs to, for `<id>`, `<id>-view` and `<id>-variants`. */
export function recordOfLease(leaseId: string): string {
  return leaseId.replace(/-(view|variants)$/, '');
}

/** Creates the flat lease `id` for record `recordId`; an existing one is kept. */
export async function ensureFlatLease(
  leases: LeaseManager,
  id: string,
  recordId: string,
  extra: Record<string, string> = {},
): Promise<void> {
  try {
    await leases.create(id, { [LABEL_GC_FLAT]: new Date().toISOString(), [LABEL_RECORD]: recordId, ...extra });
  } catch (err) {
    if (!(err instanceof ErrAlreadyExists)) throw err;
  }
}

/** Deletes a lease, ignoring one that is already gone (no ErrNotFound is made for it). */
export function deleteLease(leases: LeaseManager, id: string): Promise<void> {
  return leases.deleteMany([id]);
}

/**
 * Deletes every lease records `recordIds` may own, by name, whether or not they exist: their view
 * and variants leases and their own, in one backend call.
 */
export function deleteRecordLeases(leases: LeaseManager, recordIds: readonly string[]): Promise<void> {
  return leases.deleteMany(recordIds.flatMap((id) => [viewLeaseId(id), variantsLeaseId(id), id]));
}

/** A temporary lease for work in progress: expires after `ttlMs` and is removed at the next open. */
export async function withTemporaryLease<T>(
  leases: LeaseManager,
  fn: (leaseId: string) => Promise<T>,
  ttlMs = 60 * 60 * 1000,
): Promise<T> {
  const id = `buildcache-tmp-${randomBytes(8).toString('hex')}`;
  await leases.create(id, {
    [LABEL_GC_EXPIRE]: new Date(Date.now() + ttlMs).toISOString(),
    [LABEL_TEMPORARY]: new Date().toISOString(),
  });
  try {
    return await fn(id);
  } finally {
    await deleteLease(leases, id);
  }
}
