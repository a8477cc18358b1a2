/**
 * Startup: load every record, clear the ones that cannot be loaded (with all their leases), drop
 * temporary leases and leases of records that do not exist, then let the backend collect garbage
 * when any of that, or an earlier process, left some.
 */
import type { ManagerContext } from './context.js';
import { STATE_ITEM } from './gc-debt.js';
import { clearRecord, loadRecordLocked } from './load.js';
import { LABEL_RECORD, LABEL_TEMPORARY, deleteLease, recordOfLease } from './leases.js';

/** Loads and repairs; the caller holds the manager lock. */
export async function repairOnOpen(cm: ManagerContext): Promise<void> {
  const ids: string[] = [];
  for await (const item of cm.store.all()) if (item.id !== STATE_ITEM) ids.push(item.id);
  for (const id of ids) {
    try {
      await loadRecordLocked(cm, id);
    } catch (err) {
      cm.logger.debug({ id, err }, 'could not load cache record; clearing it');
      await clearRecord(cm, id);
    }
  }
  let removed = 0;
  for (const lease of await cm.backend.leases.list()) {
    const owner = lease.labels[LABEL_RECORD];
    const temporary = lease.labels[LABEL_TEMPORARY] !== undefined;
    if (temporary || (owner !== undefined && !cm.records.has(recordOfLease(lease.id)))) {
      await deleteLease(cm.backend.leases, lease.id);
      removed++;
    }
  }
  if (removed > 0) cm.logger.info({ removed }, 'removed stale leases');
  // Records cleared above owed a collection already; so did deletions of an earlier process.
  if (removed > 0 || (await cm.gcDebt.pending())) await cm.gcDebt.collect(cm.backend);
}
