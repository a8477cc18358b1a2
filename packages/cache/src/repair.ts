/**
 * Startup, from durable markers only (records load on first use): finish tombstoned records (found
 * through their index), drop this cache's temporary leases, and — only when the previous process
 * did not close cleanly — its leases of records that do not exist; then let the backend collect
 * garbage when any of that, or an earlier process, left some. Only leases labelled with this
 * cache's owner are ever looked at: another cache's, or an unlabelled one, is not ours.
 */
import type { ManagerContext } from './context.js';
import { STATE_ITEM } from './gc-debt.js';
import { clearRecord } from './load.js';
import { INDEX_TOMBSTONE } from './record-metadata.js';
import { LABEL_TEMPORARY, deleteLease, recordOfLease } from './leases.js';
import { ownerFilter } from './owner.js';

/** State key set while a manager has the cache open; still set at open means the last one crashed. */
const OPEN_KEY = 'manager.open';

/** Marks the cache open (durably); returns whether the previous manager closed it cleanly. */
async function markOpen(cm: ManagerContext): Promise<boolean> {
  const item = await cm.store.get(STATE_ITEM);
  const clean = item.get(OPEN_KEY) !== true;
  item.set(OPEN_KEY, true);
  await item.commit();
  return clean;
}

/** Marks a clean close (after every write of this manager); the caller holds the manager lock. */
export async function markClosed(cm: ManagerContext): Promise<void> {
  const item = await cm.store.get(STATE_ITEM);
  item.delete(OPEN_KEY);
  await item.commit();
}

/** The IDs of every stored record, read from keys only. */
async function storedIds(cm: ManagerContext): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const id of cm.store.ids()) ids.add(id);
  return ids;
}

/** Repairs what a crash left; the caller holds the manager lock. */
export async function repairOnOpen(cm: ManagerContext): Promise<void> {
  const clean = await markOpen(cm);
  for (const item of await cm.store.search(INDEX_TOMBSTONE)) await clearRecord(cm, item.id);
  // After a clean close only temporary leases can be stale: the backend filters them out of the rest.
  const owned = await cm.backend.leases.list([
    clean ? `${ownerFilter(cm.owner)},labels."${LABEL_TEMPORARY}"` : ownerFilter(cm.owner),
  ]);
  const stored = clean ? undefined : await storedIds(cm);
  const stale = owned.filter(
    (lease) => lease.labels[LABEL_TEMPORARY] !== undefined || (stored !== undefined && !stored.has(recordOfLease(lease.id))),
  );
  if (stale.length > 0) {
    await cm.gcDebt.owe();
    for (const lease of stale) await deleteLease(cm.backend.leases, lease.id);
    cm.logger.info({ removed: stale.length }, 'removed stale leases');
  }
  if (await cm.gcDebt.pending()) await cm.gcDebt.collect(cm.backend);
}
