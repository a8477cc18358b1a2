/**
 * Lazy records: a record made from a blob (getByBlob) has no snapshot until first mounted or
 * extracted; then its blob is fetched (through its descriptor handler, if missing) and applied.
 */
import { randomBytes } from 'node:crypto';
import { ErrAlreadyExists, ErrDigestMismatch, ErrNeedsRemoteProvider, ErrNotFound } from '@buildcache/errdefs';
import type { DescHandlers } from './context.js';
import type { CacheRecord } from './records.js';
import { SIZE_UNKNOWN } from './record-metadata.js';
import { descriptorOf } from './blobs.js';
import { withTemporaryLease } from './leases.js';
import { freshWriter } from './ingest.js';

/** Whether the record's blob is in the content store. */
async function hasBlob(rec: CacheRecord): Promise<boolean> {
  const blob = rec.md.blob;
  if (!blob) return false;
  try {
    await rec.cm.backend.content.info(blob);
    return true;
  } catch (err) {
    if (err instanceof ErrNotFound) return false;
    throw err;
  }
}

/** Throws ErrNeedsRemoteProvider when a lazy chain has blobs that are neither stored nor fetchable. */
export async function checkProviders(rec: CacheRecord, handlers: DescHandlers): Promise<void> {
  const missing: string[] = [];
  for (let r: CacheRecord | undefined = rec; r; r = r.parent?.record) {
    if (r.md.blobOnly && r.md.blob && !handlers.has(r.md.blob) && !(await hasBlob(r))) missing.push(r.md.blob);
  }
  if (missing.length) {
    throw new ErrNeedsRemoteProvider(
      `record ${rec.id} is lazy and needs descriptor handlers for blobs ${missing.join(', ')}; pass descHandlers`,
      { details: { id: rec.id, digests: missing } },
    );
  }
}

/** Copies a blob from its provider into the content store under the record's lease. */
async function fetchBlob(rec: CacheRecord, handlers: DescHandlers, signal?: AbortSignal): Promise<void> {
  const desc = descriptorOf(rec);
  const handler = handlers.get(desc.digest);
  if (!handler) {
    throw new ErrNeedsRemoteProvider(
      `blob ${desc.digest} of record ${rec.id} is not in the content store; pass descHandlers with a provider for it`,
      { details: { id: rec.id, digest: desc.digest } },
    );
  }
  const writer = await freshWriter(rec.cm.backend.content, `buildcache-fetch-${desc.digest}`, {
    lease: rec.id,
    expected: desc.digest,
    total: desc.size,
  });
  // Someone stored it meanwhile; the store has added it to our lease.
  if (writer.exists) return;
  try {
    for await (const chunk of await handler.provider.fetch(desc, signal ? { signal } : {})) {
      signal?.throwIfAborted();
      await writer.write(chunk);
    }
    await writer.commit({ size: desc.size, expected: desc.digest });
  } catch (err) {
    await writer.close().catch(() => undefined);
    throw err;
  }
}

/** Makes the record's blob exist in the content store, fetching it through its descriptor handler if missing. */
export async function ensureBlob(rec: CacheRecord, handlers: DescHandlers, signal?: AbortSignal): Promise<void> {
  if (await hasBlob(rec)) return;
  await rec.blobFlight.do(`${rec.id}-fetch`, async (shared) => {
    if (!(await hasBlob(rec))) await fetchBlob(rec, handlers, shared);
  }, signal ? { signal } : {});
}

/** Makes the snapshot of `rec` (and its parents) exist, applying blobs where needed. */
export async function extractRecord(rec: CacheRecord, handlers: DescHandlers, signal?: AbortSignal): Promise<void> {
  if (!rec.md.blobOnly) return;
  await rec.extractFlight.do(
    `${rec.id}-extract`,
    async (shared) => {
      if (!rec.md.blobOnly) return;
      const parent = rec.parent?.record;
      if (parent) await extractRecord(parent, handlers, shared);
      const { snapshotter, applier, leases } = rec.cm.backend;
      const snapshotID = rec.md.snapshotID;
      let exists = true;
      await snapshotter.stat(snapshotID).catch((err: unknown) => {
        if (err instanceof ErrNotFound) exists = false;
        else throw err;
      });
      if (!exists) {
        await ensureBlob(rec, handlers, shared);
        const desc = descriptorOf(rec);
        await withTemporaryLease(leases, async (lease) => {
          const key = `extract-${randomBytes(6).toString('hex')} ${rec.md.chainID ?? rec.id}`;
          const mounts = await snapshotter.prepare(key, parent?.md.snapshotID, { lease });
          try {
            const applied = await applier.apply(desc, mounts, { signal: shared });
            if (applied.digest !== rec.md.diffID) {
              throw new ErrDigestMismatch(
                `layer ${desc.digest} of record ${rec.id} unpacked to diffID ${applied.digest}, expected ${rec.md.diffID}`,
                { details: { id: rec.id, digest: desc.digest } },
              );
            }
            await snapshotter.commit(snapshotID, key, { lease: rec.id });
          } catch (err) {
            await snapshotter.remove(key).catch(() => undefined);
            if (!(err instanceof ErrAlreadyExists)) throw err;
          }
        });
      }
      await rec.lock(async () => {
        rec.md.blobOnly = false;
        rec.md.size = SIZE_UNKNOWN;
        await rec.md.commit();
      });
    },
    signal ? { signal } : {},
  );
}
