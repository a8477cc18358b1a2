/**
 * Startup, from durable markers only (records load on first use): finish tombstoned records (found
 * through their index), drop this cache's temporary leases (after a clean close, the ones it named;
 * no lease listing), and — only when the previous process did not close cleanly — its leases of
 * records that do not exist; then let the backend collect garbage when any of that, or an earlier
 * process, left some; and bring the records of an older store to the current layout (once, see
 * migrate.ts). Only leases labelled with this cache's owner are ever looked at: another
 * cache's, or an unlabelled one, is not ours.
 */
import type { ManagerContext } from './context.js';
import { STATE_ITEM } from './gc-debt.js';
import { clearRecord } from './load.js';
import { migrateOnOpen } from './migrate.js';
import { INDEX_TOMBSTONE } from './record-metadata.js';
import { LABEL_TEMPORARY, recordOfLease } from './leases.js';
import { ownerFilter, temporaryLeases } from './owner.js';

/** State key set while a manager has the cache open; still set at open means the last one crashed. */
const OPEN_KEY = 'manager.open';
/** State key written at a clean close: the temporary leases that manager left (IDs). */
const TEMPORARY_KEY = 'manager.temporaryLeases';

/**
 * Marks the cache open (durably). Returns the temporary leases the previous manager named at a
 * clean close, or undefined when they must be listed: it crashed, or closed without naming them.
 */
async function markOpen(cm: ManagerContext): Promise<{ clean: boolean; temporary?: string[] }> {
  const item = await cm.store.get(STATE_ITEM);
  const clean = item.get(OPEN_KEY) !== true;
  const named = item.get(TEMPORARY_KEY);
  item.set(OPEN_KEY, true);
  item.delete(TEMPORARY_KEY);
  await item.commit();
  return clean && Array.isArray(named) ? { clean, temporary: named.filter((id): id is string => typeof id === 'string') } : { clean };
}

/**
 * Marks a clean close (after every write of this manager), naming the temporary leases still
 * there; the caller holds the manager lock.
 */
export async function markClosed(cm: ManagerContext): Promise<void> {
  const item = await cm.store.get(STATE_ITEM);
  const temporary = temporaryLeases(cm.backend);
  item.delete(OPEN_KEY);
  if (temporary !== undefined) item.set(TEMPORARY_KEY, temporary);
  await item.commit();
}

/** The IDs of every stored record, read from keys only. */
async function storedIds(cm: ManagerContext): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const id of cm.store.ids()) ids.add(id);
  return ids;
}

/**
 * The leases of this cache that are stale: temporary ones, and after a crash those of records that
 * do not exist (after a clean close the backend filters the temporary ones out of the rest).
 */
async function listStale(cm: ManagerContext, clean: boolean): Promise<string[]> {
  const owned = await cm.backend.leases.list([
    clean ? `${ownerFilter(cm.owner)},labels."${LABEL_TEMPORARY}"` : ownerFilter(cm.owner),
  ]);
  const stored = clean ? undefined : await storedIds(cm);
  return owned
    .filter((lease) => lease.labels[LABEL_TEMPORARY] !== undefined || (stored !== undefined && !stored.has(recordOfLease(lease.id))))
    .map((lease) => lease.id);
}

/** Repairs what a crash left; the caller holds the manager lock. */
export async function repairOnOpen(cm: ManagerContext): Promise<void> {
  const { clean, temporary } = await markOpen(cm);
  await migrateOnOpen(cm);
  for (const item of await cm.store.search(INDEX_TOMBSTONE)) await clearRecord(cm, item.id);
  const stale = temporary ?? (await listStale(cm, clean));
  if (stale.length > 0) {
    await cm.gcDebt.owe();
    await cm.backend.leases.deleteMany(stale);
    cm.logger.info({ removed: stale.length }, 'removed stale leases');
  }
  if (await cm.gcDebt.pending()) await cm.gcDebt.collect(cm.backend);
}
