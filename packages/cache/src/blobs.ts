/** Layer blobs of records: recording one, chain IDs, and computing the blobs of a whole chain (export). */
import { randomBytes } from 'node:crypto';
import { ErrInvalidArgument, ErrNoBlobs, ErrNotFound } from '@buildcache/errdefs';
import {
  LABEL_UNCOMPRESSED,
  checkCompression,
  compressionOf,
  distributableMediaType,
  isNonDistributable,
  layerMediaType,
  type Compression,
  type Descriptor,
  type Mount,
} from '@buildcache/snapshot';
import { checkDigest, chainID, blobChainID } from './ids.js';
import { ensureFlatLease, withTemporaryLease } from './leases.js';
import type { CacheRecord } from './records.js';
import { availableBlobs, blobIn, storedBlobIn, type BlobFormat } from './variants.js';
import type { DescHandlers } from './context.js';
import { SIZE_UNKNOWN } from './record-metadata.js';

/** Options of `getRemote()`. */
export interface RemoteOptions {
  /**
   * Compression of blobs created now (default gzip). Existing blobs keep theirs. `estargz` gives
   * every layer as eStargz (a variant converted once, annotated with its TOC digest, uncompressed
   * size and own diffID), as if `force` were set.
   */
  readonly compression?: BlobFormat;
  /** Return every blob in `compression`, converting existing blobs of another compression (kept as variants). */
  readonly force?: boolean;
  /** Create missing blobs with the differ (default true); false: fail with ErrNoBlobs, changing nothing. */
  readonly createIfNeeded?: boolean;
  /**
   * Treat non-distributable (foreign) layers as ordinary ones: distributable media type, no `urls`,
   * converted by `force` (default false: they keep their blob, media type and `urls`).
   */
  readonly convertNonDistributable?: boolean;
}

/** Options of `getRemotes()`. */
export interface RemotesOptions extends RemoteOptions {
  /**
   * Also return every other chain that stored blobs make up: each combination of the lower layers'
   * blobs and variants, topped with the top layer's blob in `compression` (none without such a blob;
   * ignored with `force`).
   */
  readonly all?: boolean;
}

/** The diffID a layer descriptor declares: its `containerd.io/uncompressed` annotation, or its digest if uncompressed. */
export function diffIDOf(desc: Descriptor): string {
  checkDigest(desc.digest, 'blob digest');
  const compression = compressionOf(desc.mediaType);
  if (compression === undefined) {
    throw new ErrInvalidArgument(`${desc.digest} has media type ${desc.mediaType}, which is not a layer`, {
      details: { digest: desc.digest },
    });
  }
  const annotated = desc.annotations?.[LABEL_UNCOMPRESSED];
  if (annotated !== undefined) return checkDigest(annotated, `${LABEL_UNCOMPRESSED} annotation of ${desc.digest}`);
  if (compression === 'uncompressed') return desc.digest;
  throw new ErrInvalidArgument(
    `${desc.digest} is compressed but has no ${LABEL_UNCOMPRESSED} annotation giving its diffID; add it`,
    { details: { digest: desc.digest } },
  );
}

/** The records of a chain, base first. */
export function chainOf(rec: CacheRecord): CacheRecord[] {
  const out: CacheRecord[] = [];
  for (let r: CacheRecord | undefined = rec; r; r = r.parent?.record) out.unshift(r);
  return out;
}

/** Fills chainID and blobChainID from the parent's, when both the parent's and this layer's are known. */
function queueChainIDs(rec: CacheRecord): void {
  const md = rec.md;
  const parent = rec.parent?.record.md;
  if (!md.diffID || !md.blob) return;
  if (parent && (!parent.chainID || !parent.blobChainID)) return;
  md.chainID = chainID(parent?.chainID, md.diffID);
  md.blobChainID = blobChainID(parent?.blobChainID, md.blob, md.diffID);
}

/** Records `desc` (already in the content store) as the blob of `rec`; a no-op if it has one. */
export async function setBlob(rec: CacheRecord, desc: Descriptor): Promise<void> {
  const diffID = diffIDOf(desc);
  await rec.finalize();
  const { content, leases } = rec.cm.backend;
  await rec.lock(async () => {
    if (rec.md.blob) return;
    await content.info(desc.digest).catch((err: unknown) => {
      if (err instanceof ErrNotFound) {
        throw new ErrNotFound(`blob ${desc.digest} is not in the content store; write it before setBlob()`, {
          cause: err,
          details: { digest: desc.digest, id: rec.id },
        });
      }
      throw err;
    });
    await ensureFlatLease(leases, rec.id, rec.id);
    await leases.addResource(rec.id, { type: 'content', id: desc.digest });
    const md = rec.md;
    md.diffID = diffID;
    md.blob = desc.digest;
    md.mediaType = desc.mediaType;
    md.blobSize = desc.size;
    const { [LABEL_UNCOMPRESSED]: _omit, ...annotations } = desc.annotations ?? {};
    md.annotations = annotations;
    md.urls = desc.urls ?? [];
    md.size = SIZE_UNKNOWN;
    queueChainIDs(rec);
    await md.commit();
  });
}

/** The descriptor of a record's blob, annotated with its diffID. */
export function descriptorOf(rec: CacheRecord): Descriptor {
  const md = rec.md;
  if (!md.blob || !md.diffID || !md.mediaType || md.blobSize === undefined) {
    throw new ErrNotFound(`record ${rec.id} has no blob`, { details: { id: rec.id } });
  }
  const urls = md.urls;
  return {
    mediaType: md.mediaType,
    digest: md.blob,
    size: md.blobSize,
    annotations: { ...md.annotations, [LABEL_UNCOMPRESSED]: md.diffID },
    ...(urls.length ? { urls } : {}),
  };
}

/** Runs `fn` with read-only mounts of a committed snapshot (a temporary view, removed afterwards). */
async function withView<T>(rec: CacheRecord, fn: (mounts: Mount[]) => Promise<T>): Promise<T> {
  const { snapshotter, leases } = rec.cm.backend;
  return withTemporaryLease(leases, async (lease) => {
    const key = `${rec.md.snapshotID}-diff-${randomBytes(6).toString('hex')}`;
    const mounts = await snapshotter.view(key, rec.md.snapshotID, { lease });
    try {
      return await fn(mounts);
    } finally {
      await snapshotter.remove(key).catch(() => undefined);
    }
  });
}

/**
 * Creates the blob of one layer with the differ (parent view → this view), under a temporary lease
 * until the record holds it: a diff cut short by a crash leaves nothing behind that the record keeps.
 */
async function computeBlob(rec: CacheRecord, compression: Compression): Promise<void> {
  await rec.finalize();
  if (rec.md.blob) return;
  const parent = rec.parent?.record;
  const { differ, leases } = rec.cm.backend;
  await withTemporaryLease(leases, async (lease) => {
    const options = { mediaType: layerMediaType(compression), lease };
    const desc = await withView(rec, (upper) =>
      parent ? withView(parent, (lower) => differ.compare(lower, upper, options)) : differ.compare([], upper, options),
    );
    await setBlob(rec, desc);
  });
}

/** `desc` with the distributable media type and without `urls`, if it is a non-distributable layer. */
function asDistributable(desc: Descriptor): Descriptor {
  if (!isNonDistributable(desc.mediaType)) return desc;
  const { urls: _dropped, ...rest } = desc;
  return { ...rest, mediaType: distributableMediaType(desc.mediaType) };
}

/** The descriptor `getRemote` gives for one layer. */
async function remoteBlobOf(layer: CacheRecord, handlers: DescHandlers, format: BlobFormat, options: RemoteOptions): Promise<Descriptor> {
  const main = descriptorOf(layer);
  if (isNonDistributable(main.mediaType) && !options.convertNonDistributable) return main;
  return asDistributable(options.force || format === 'estargz' ? await blobIn(layer, handlers, format) : main);
}

/** Blob descriptors of the chain ending at `rec`, base first, creating missing blobs (unless told not to). */
export async function getRemote(rec: CacheRecord, handlers: DescHandlers, options: RemoteOptions): Promise<Descriptor[]> {
  const format = options.compression === 'estargz' ? 'estargz' : checkCompression(options.compression ?? 'gzip');
  const compression = format === 'estargz' ? 'gzip' : format;
  const chain = chainOf(rec);
  if (options.createIfNeeded === false) {
    const missing = chain.filter((layer) => !layer.md.blob).map((layer) => layer.id);
    if (missing.length) {
      throw new ErrNoBlobs(`records ${missing.join(', ')} of the chain of ${rec.id} have no blob; call getRemote() without createIfNeeded: false`, {
        details: { id: rec.id, ids: missing },
      });
    }
  }
  for (const layer of chain) {
    await layer.blobFlight.do(`${layer.id}-blob`, () => computeBlob(layer, compression));
    if (!layer.md.chainID) {
      await layer.lock(async () => {
        queueChainIDs(layer);
        await layer.md.commit();
      });
    }
  }
  return Promise.all(chain.map((layer) => remoteBlobOf(layer, handlers, format, options)));
}

/**
 * The chain of `getRemote`, then (with `all`) every other chain of stored blobs whose top layer is
 * in `compression`: each combination of the lower layers' blobs and variants. Nothing is converted
 * or fetched for the extra chains; duplicates of the first are left out.
 */
export async function getRemotes(rec: CacheRecord, handlers: DescHandlers, options: RemotesOptions): Promise<Descriptor[][]> {
  const main = await getRemote(rec, handlers, options);
  if (!options.all || options.force) return [main];
  const shown = (d: Descriptor): Descriptor => (options.convertNonDistributable ? asDistributable(d) : d);
  const chain = chainOf(rec);
  const stored = await storedBlobIn(chain[chain.length - 1]!, options.compression ?? 'gzip');
  if (!stored) return [main];
  const top = shown(stored);
  let combos: Descriptor[][] = [[]];
  for (const layer of chain.slice(0, -1)) {
    const blobs = (await availableBlobs(layer)).map(shown);
    combos = blobs.flatMap((b) => combos.map((lower) => [...lower, b]));
  }
  const key = (descs: readonly Descriptor[]): string => descs.map((d) => d.digest).join(',');
  const seen = new Set([key(main)]);
  const out = [main];
  for (const lower of combos) {
    const remote = [...lower, top];
    if (seen.has(key(remote))) continue;
    seen.add(key(remote));
    out.push(remote);
  }
  return out;
}
