/**
 * Loading records from the metadata store on first use, with BuildKit's repairs and the ones it misses: a
 * tombstoned record is finished off; a record whose equal mutable vanished after its snapshot was
 * committed is repaired; a mutable record whose snapshot is gone is dropped.
 */
import { ErrNotFound } from '@buildcache/errdefs';
import { NO_HANDLERS, type ManagerContext } from './context.js';
import { CacheRecord } from './records.js';
import { INDEX_EQUAL_MUTABLE, RecordMetadata } from './record-metadata.js';
import { deleteRecordsLocked, purge, tombstone } from './deletion.js';
import { ImmutableRef } from './refs.js';

/** Whether snapshot `key` exists on the backend. */
export async function snapshotExists(cm: ManagerContext, key: string): Promise<boolean> {
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
      if (mutable.md.equalImmutable !== id) {
        // Made before the mutable record named its twin: it does from now on.
        mutable.md.equalImmutable = id;
        cm.deferCommit(mutable.md);
      }
    } else if (await snapshotExists(cm, md.snapshotID)) {
      // Crashed after committing the snapshot, before recording it: the commit stands.
      md.equalMutable = undefined;
      await md.commit();
      if (mutable) await deleteRecordsLocked(cm, [mutable], false); // its snapshot is gone
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

/**
 * Loads the committed record that shares mutable `m`'s data (which links the two), if there is
 * one: the one its metadata names, with one point read; a record made before it named one (see
 * `equalImmutable`) is looked up in the index of committed records by mutable record.
 */
async function loadTwinLocked(cm: ManagerContext, m: CacheRecord): Promise<void> {
  const named = m.md.equalImmutable;
  const candidates = named !== undefined ? [await cm.store.get(named)] : await cm.store.search(INDEX_EQUAL_MUTABLE + m.id);
  for (const item of candidates) {
    if (m.equalImmutable) return;
    if (new RecordMetadata(item).equalMutable !== m.id) {
      if (!cm.records.has(item.id)) cm.store.evict(item.id); // not made yet, or gone
      continue;
    }
    try {
      await loadRecordLocked(cm, item.id);
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
    }
  }
}

/**
 * The record `id` (loaded if need be), or undefined when it is gone: being deleted, or definitely
 * unloadable (ErrNotFound: no metadata, tombstoned, its snapshot or its parent gone), and then what
 * is left of it is deleted. Any other failure (the backend or the store failing, maybe briefly) is
 * thrown and deletes nothing.
 */
export async function loadOrClearLocked(cm: ManagerContext, id: string): Promise<CacheRecord | undefined> {
  if (cm.purging.has(id)) return undefined;
  try {
    return await loadRecordLocked(cm, id);
  } catch (err) {
    if (!(err instanceof ErrNotFound)) throw err;
    if (cm.records.has(id)) return undefined; // in memory and being deleted
    cm.logger.debug({ id, err }, 'cache record is gone; deleting what is left of it');
    await clearRecord(cm, id);
    return undefined;
  }
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
    const items = await cm.store.getMany(next);
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
