/**
 * Loading records from the metadata store on first use, with BuildKit's repairs and the ones it misses: a
 * tombstoned record is finished off; a record whose equal mutable vanished after its snapshot was
 * committed is repaired; a mutable record whose snapshot is gone is dropped.
 */
import { ErrNotFound } from '@buildcache/errdefs';
import { NO_HANDLERS, type ManagerContext } from './context.js';
import { CacheRecord } from './records.js';
import type { StorageItem } from '@buildcache/metadata';
import { INDEX_EQUAL_MUTABLE, RecordMetadata, SIZE_UNKNOWN } from './record-metadata.js';
import { STATE_ITEM } from './gc-debt.js';
import { deleteRecordsLocked, purge, tombstone } from './deletion.js';
import { ImmutableRef } from './refs.js';

async function snapshotExists(cm: ManagerContext, key: string): Promise<boolean> {
  try {
    await cm.backend.snapshotter.stat(key);
    return true;
  } catch (err) {
    if (err instanceof ErrNotFound) return false;
    throw err;
  }
}

/**
 * Deletes what is left of a record whose deletion was interrupted, or that cannot be loaded (by the
 * one deletion protocol; a record whose metadata cannot even be read is deleted untombstoned, and
 * stays unloadable if that is interrupted).
 */
export async function clearRecord(cm: ManagerContext, id: string): Promise<void> {
  try {
    const md = new RecordMetadata(await cm.store.get(id));
    if (!md.deleted) await tombstone([md]);
  } catch (err) {
    cm.logger.debug({ id, err }, 'could not tombstone an unloadable record');
  }
  await purge(cm, [id]);
}

/**
 * The record `id`, from memory or loaded from the store (with its parents, and a mutable record with
 * the committed record that shares its data, unless `withTwin` is false). Throws ErrNotFound for
 * a record that does not exist, is dead, or was tombstoned. The caller holds the manager lock.
 */
export async function loadRecordLocked(cm: ManagerContext, id: string, withTwin = true): Promise<CacheRecord> {
  const known = cm.records.get(id);
  if (known) {
    if (known.isDead()) throw new ErrNotFound(`record ${id} is being deleted`, { details: { id } });
    return known;
  }
  const md = new RecordMetadata(await cm.store.get(id));
  if (!md.exists) {
    cm.store.evict(id);
    throw new ErrNotFound(`no cache record ${id}`, { details: { id } });
  }
  if (md.deleted) {
    await clearRecord(cm, id);
    throw new ErrNotFound(`record ${id} was deleted`, { details: { id } });
  }
  const parentId = md.parent;
  const parent = parentId ? await loadRecordLocked(cm, parentId) : undefined;

  let rec: CacheRecord;
  const equalMutableId = md.equalMutable;
  if (equalMutableId) {
    let mutable: CacheRecord | undefined;
    try {
      mutable = await loadRecordLocked(cm, equalMutableId, false); // this record is its twin
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
    }
    if (mutable && (await snapshotExists(cm, mutable.md.snapshotID))) {
      rec = new CacheRecord(cm, md, false, mutable.lock);
      rec.equalMutable = mutable;
      mutable.equalImmutable = rec;
    } else if (await snapshotExists(cm, md.snapshotID)) {
      // Crashed after committing the snapshot, before recording it: the commit stands.
      md.equalMutable = undefined;
      await md.commit();
      if (mutable) await deleteRecordsLocked(cm, [mutable]);
      rec = new CacheRecord(cm, md, false);
    } else {
      throw new ErrNotFound(`record ${id}: neither its snapshot nor its equal mutable ${equalMutableId} exists`, {
        details: { id },
      });
    }
  } else {
    rec = new CacheRecord(cm, md, !md.committed);
    if (rec.mutable && !(await snapshotExists(cm, md.snapshotID))) {
      throw new ErrNotFound(`mutable record ${id} lost its snapshot ${md.snapshotID}`, { details: { id } });
    }
  }
  if (parent) rec.parent = new ImmutableRef(parent, false, NO_HANDLERS);
  cm.records.set(id, rec);
  if (rec.mutable && withTwin) await loadTwinLocked(cm, rec);
  return rec;
}

/** Loads the committed record that shares mutable `m`'s data (which links the two), if there is one. */
async function loadTwinLocked(cm: ManagerContext, m: CacheRecord): Promise<void> {
  for (const item of await cm.store.search(INDEX_EQUAL_MUTABLE + m.id)) {
    if (m.equalImmutable) return;
    try {
      await loadRecordLocked(cm, item.id);
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
    }
  }
}

/** The record `id` (loaded if need be), or undefined after deleting it when it cannot be loaded. */
export async function loadOrClearLocked(cm: ManagerContext, id: string): Promise<CacheRecord | undefined> {
  if (cm.purging.has(id)) return undefined;
  try {
    return await loadRecordLocked(cm, id);
  } catch (err) {
    if (cm.records.has(id)) return undefined; // in memory and being deleted
    cm.logger.debug({ id, err }, 'could not load cache record; deleting it');
    await clearRecord(cm, id);
    return undefined;
  }
}

/**
 * Whether a stored record not in memory can be reported (by du, prune) from its metadata alone:
 * a finalized immutable record of known size, with nothing to repair and no twin. Not being in
 * memory, it has no handle.
 */
export function isSettled(md: RecordMetadata): boolean {
  return md.exists && !md.deleted && md.committed && md.equalMutable === undefined && md.size !== SIZE_UNKNOWN;
}

/** How many records du and prune read per step. */
const BATCH = 128;

/** The stored records' metadata items in record ID order, `BATCH` at a time (the manager's own state left out). */
export async function* storedBatches(cm: ManagerContext): AsyncGenerator<StorageItem[]> {
  let items: StorageItem[] = [];
  for await (const item of cm.store.all()) {
    if (item.id === STATE_ITEM) continue;
    items.push(item);
    if (items.length < BATCH) continue;
    yield items;
    items = [];
  }
  if (items.length > 0) yield items;
}

/**
 * Reads the metadata items of records about to be loaded, and of their ancestors, a generation at a
 * time in parallel, so that loading them under the manager lock waits for no read. Returns the IDs
 * read, for `dropPrefetched` once they are loaded.
 */
export async function prefetch(cm: ManagerContext, ids: readonly string[]): Promise<string[]> {
  const seen = new Set<string>();
  let next = ids.filter((id) => !cm.records.has(id));
  while (next.length > 0) {
    for (const id of next) seen.add(id);
    const items = await Promise.all(next.map((id) => cm.store.get(id)));
    next = [];
    for (const item of items) {
      const parent = new RecordMetadata(item).parent;
      if (parent && !seen.has(parent) && !cm.records.has(parent)) next.push(parent);
    }
  }
  return [...seen];
}

/** Evicts the prefetched items that did not become records (the caller holds the manager lock). */
export function dropPrefetched(cm: ManagerContext, ids: readonly string[]): void {
  for (const id of ids) if (!cm.records.has(id)) cm.store.evict(id);
}

/**
 * Whether a scanned item has been emptied since the scan read it: its record was deleted to the
 * end (the metadata clear is the deletion's last step), so nothing is left to report or delete.
 */
const cleared = (item: StorageItem): boolean => item.keys().length === 0;

/**
 * Visits one batch of stored items (du, prune) under the manager lock: a record in memory as it
 * is, a settled record from its metadata alone (`rec` undefined; its item leaves memory again
 * after the visit), any other loaded first (read ahead outside the lock). Items being purged or
 * cleared meanwhile (a concurrent prune's), or cleared on loading, are skipped.
 */
export async function visitStored(
  cm: ManagerContext,
  items: readonly StorageItem[],
  visit: (md: RecordMetadata, rec: CacheRecord | undefined) => void,
): Promise<void> {
  const toLoad = items.filter((item) => !cm.records.has(item.id) && !cleared(item) && !isSettled(new RecordMetadata(item)));
  const read = await prefetch(cm, toLoad.map((item) => item.id));
  await cm.mu(async () => {
    for (const item of items) {
      if (cm.purging.has(item.id) || cleared(item)) continue;
      let rec = cm.records.get(item.id);
      if (!rec) {
        const md = new RecordMetadata(item);
        if (isSettled(md)) {
          visit(md, undefined);
          cm.store.evict(item.id);
          continue;
        }
        rec = await loadOrClearLocked(cm, item.id);
      }
      if (rec) visit(rec.md, rec);
    }
    dropPrefetched(cm, read);
  });
}
