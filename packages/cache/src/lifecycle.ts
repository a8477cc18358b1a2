/**
 * The record transitions BuildKit users rely on: commit of a mutable record into an equal
 * immutable one (sharing data), and release of a mutable record (removed unless retained).
 * Both run with the manager lock and the shared record lock held.
 */
import { newRecordId } from './ids.js';
import { CacheRecord, type Handle } from './records.js';
import { RecordMetadata, SIZE_UNKNOWN } from './record-metadata.js';
import { deleteRecordsLocked } from './deletion.js';
import { noteNewChildLocked } from './new-children.js';

/**
 * Creates the immutable record equal to mutable `m`. `handle` (the committing mutable handle, or
 * none for an automatic commit) becomes the link by which the immutable holds `m`.
 */
export async function commitMutableLocked(m: CacheRecord, handle: Handle | undefined): Promise<CacheRecord> {
  const cm = m.cm;
  const reserved = m.md.equalImmutable;
  let md = reserved === undefined || cm.purging.has(reserved) ? undefined : new RecordMetadata(await cm.store.get(reserved));
  if (!md || md.exists) {
    // Made before IDs were reserved (or the reserved one is taken): reserve one now, before the record exists.
    if (md && !cm.records.has(md.id)) cm.store.evict(md.id);
    md = new RecordMetadata(await cm.store.get(await reserveTwinId(m)));
  }
  // The reserved ID may be that of a twin getMutable dropped before a crash let it reserve a new one:
  // reusing it is safe, as nothing in the backend is named by a twin that was never finalized (lease,
  // snapshot, view and variants all come with or after finalize, which drops the mutable record), and
  // its metadata is gone only after its leases (test/cache/twin-id-crash.test.ts).
  const id = md.id;
  md.createdAt = cm.now();
  md.committed = true;
  md.size = SIZE_UNKNOWN;
  md.snapshotID = id;
  md.equalMutable = m.id;
  md.parent = m.md.parent;
  md.recordType = m.md.recordType;
  md.retain = m.md.retain;
  md.description = m.md.description;
  for (const ref of m.md.imageRefs) md.addImageRef(ref);
  await md.commit();
  const imm = new CacheRecord(cm, md, false, m.lock);
  imm.parent = m.parent?.clone();
  imm.equalMutable = m;
  m.equalImmutable = imm;
  const link: Handle = handle ?? { triggerLastUsed: false };
  m.refs.add(link);
  m.linkHandle = link;
  cm.records.set(id, imm);
  noteNewChildLocked(cm, md.parent);
  return imm;
}

/**
 * Reserves (durably) a new ID for the committed record mutable `m` will share its data with, once
 * its last one is gone; returns it.
 */
export async function reserveTwinId(m: CacheRecord): Promise<string> {
  const id = newRecordId();
  m.md.equalImmutable = id;
  await m.md.commit();
  return id;
}

/**
 * Drops `handle` from mutable record `m`. Without retain policy the record goes, with its data,
 * together with an equal immutable that is not retained either; a retained one stays.
 */
export async function releaseMutableLocked(m: CacheRecord, handle: Handle): Promise<void> {
  m.refs.delete(handle);
  if (m.linkHandle === handle) m.linkHandle = undefined;
  if (m.refs.size > 0 || m.dead) return;
  if (!m.md.retain) {
    const imm = m.equalImmutable;
    if (imm?.md.retain) {
      if (handle.triggerLastUsed) m.updateLastUsed();
      return;
    }
    // One deletion for both: tombstoned together before any of their leases goes.
    await deleteRecordsLocked(m.cm, imm ? [imm, m] : [m]);
    return;
  }
  if (handle.triggerLastUsed) m.updateLastUsed();
}
