/**
 * Which records stay in memory. A record is loaded on first use and evicted, with its metadata
 * item, once nothing needs it: no handle, no pin (du or prune looking at it), no view, no size,
 * blob, variant or extraction work, no queued or in-flight metadata write — and the same holds
 * for the record it shares data with, which goes with it. Evicting a record drops the handle it
 * held on its parent, which may free the parent in turn. Sweeps run when more than
 * `RESIDENT_LIMIT` records are in memory, so recently used records stay a while.
 */
import type { ManagerContext } from './context.js';
import type { CacheRecord } from './records.js';

/** How many records may stay in memory without a sweep (in-use ones are never evicted). */
const RESIDENT_LIMIT = 1024;

/** What the last sweep of each manager could not evict: the next sweep waits until twice that. */
const kept = new WeakMap<ManagerContext, number>();

function idle(rec: CacheRecord): boolean {
  return (
    !rec.dead &&
    rec.refs.size === 0 &&
    rec.pins === 0 &&
    rec.viewMounts === undefined &&
    rec.busy === false &&
    rec.md.item.idle
  );
}

/** Evicts `rec` (and its twin) if nothing needs it, then its parent if that frees it; the caller holds the manager lock. */
function evictLocked(cm: ManagerContext, rec: CacheRecord): boolean {
  if (cm.records.get(rec.id) !== rec) return false;
  const group = [rec];
  if (rec.equalMutable) group.push(rec.equalMutable);
  if (rec.equalImmutable) group.push(rec.equalImmutable);
  if (!group.every(idle)) return false;
  for (const r of group) {
    cm.records.delete(r.id);
    cm.store.evict(r.id);
  }
  for (const r of group) {
    const parent = r.parent;
    r.parent = undefined;
    if (parent) {
      parent.forgetLocked();
      evictLocked(cm, parent.record);
    }
  }
  return true;
}

/** Evicts every record nothing needs, once more than `RESIDENT_LIMIT` are in memory; the caller holds the manager lock. */
function sweepLocked(cm: ManagerContext): void {
  if (cm.records.size <= Math.max(RESIDENT_LIMIT, 2 * (kept.get(cm) ?? 0))) return;
  for (const rec of [...cm.records.values()]) evictLocked(cm, rec);
  kept.set(cm, cm.records.size);
}

/** Runs `fn` under the manager lock and sweeps before letting go of it (for calls that load or release records). */
export function lockedThenSweep<T>(cm: ManagerContext, fn: () => Promise<T> | T): Promise<T> {
  return cm.mu(async () => {
    try {
      return await fn();
    } finally {
      sweepLocked(cm);
    }
  });
}

/** Undoes the pins (`rec.pins++`) du and prune put on records they work on outside the lock, then sweeps; takes the manager lock. */
export function unpin(cm: ManagerContext, recs: readonly CacheRecord[]): Promise<void> {
  return lockedThenSweep(cm, () => {
    for (const r of recs) r.pins--;
  });
}
