/**
 * Lazy size of a record: computed once under flight control and persisted; reset to unknown when
 * its data may change (a writable mount of a mutable record, a new blob, an extraction).
 */
import { ErrNotFound } from '@buildcache/errdefs';
import type { CacheRecord } from './records.js';
import { variantsSize } from './variants.js';
import { SIZE_UNKNOWN } from './record-metadata.js';

/**
 * Snapshot usage (unless the record is blob-only) plus its blob and the blob's compression
 * variants. Concurrent callers share one
 * computation; one caller's cancellation does not stop it for the others.
 */
export function recordSize(rec: CacheRecord, signal?: AbortSignal): Promise<number> {
  const known = rec.md.size;
  if (known !== SIZE_UNKNOWN) return Promise.resolve(known);
  return rec.sizeFlight.do(
    rec.id,
    async () => {
      if (rec.md.size !== SIZE_UNKNOWN) return rec.md.size;
      if (rec.isDead()) return 0;
      const { snapshotter, content } = rec.cm.backend;
      let size = 0;
      if (!rec.md.blobOnly) {
        try {
          size += (await snapshotter.usage(rec.dataSnapshotID)).size;
        } catch (err) {
          if (!(err instanceof ErrNotFound)) throw err;
        }
      }
      const blob = rec.md.blob;
      if (blob) {
        try {
          size += (await content.info(blob)).size;
        } catch (err) {
          if (!(err instanceof ErrNotFound)) throw err;
        }
        size += await variantsSize(rec);
      }
      if (!rec.isDead()) {
        rec.md.size = size;
        await rec.md.commit();
      }
      return size;
    },
    signal ? { signal } : {},
  );
}

/** Marks the size unknown because the record's data may change. */
export async function resetSize(rec: CacheRecord): Promise<void> {
  if (rec.md.size === SIZE_UNKNOWN) return;
  rec.md.size = SIZE_UNKNOWN;
  await rec.md.commit();
}
