/**
 * Startup: load every record, delete the ones that cannot be loaded (and finish tombstoned ones),
 * drop this cache's temporary leases and its leases of records that do not exist, then let the
 * backend collect garbage when any of that, or an earlier process, left some. Only leases labelled
 * with this cache's owner are ever looked at: another cache's, or an unlabelled one, is not ours.
 */
import type { ManagerContext } from './context.js';
import { STATE_ITEM } from './gc-debt.js';
import { clearRecord, loadRecordLocked } from './load.js';
import { LABEL_TEMPORARY, deleteLease, recordOfLease } from './leases.js';
import { ownerFilter } from './owner.js';

/** Loads and repairs; the caller holds the manager lock. */
export async function repairOnOpen(cm: ManagerContext): Promise<void> {
  const ids: string[] = [];
  for await (const item of cm.store.all()) if (item.id !== STATE_ITEM) ids.push(item.id);
  for (const id of ids) {
    try {
      await loadRecordLocked(cm, id);
    } catch (err) {
      cm.logger.debug({ id, err }, 'could not load cache record; deleting it');
      await clearRecord(cm, id);
    }
  }
  const stale = (await cm.backend.leases.list([ownerFilter(cm.owner)])).filter(
    (lease) => lease.labels[LABEL_TEMPORARY] !== undefined || !cm.records.has(recordOfLease(lease.id)),
  );
  if (stale.length > 0) {
    await cm.gcDebt.owe();
    for (const lease of stale) await deleteLease(cm.backend.leases, lease.id);
    cm.logger.info({ removed: stale.length }, 'removed stale leases');
  }
  if (await cm.gcDebt.pending()) await cm.gcDebt.collect(cm.backend);
}
