/**
 * Compression variants of a record's blob (`getRemote({ compression, force: true })`): the blob is
 * converted once, stored under the record's non-flat `<id>-variants` lease, and linked to the main
 * blob by `containerd.io/gc.ref.content.blob-<digest>` labels both ways, so that GC keeps the two
 * together. Variants count in the record's size.
 */
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrAlreadyExists, ErrNotFound } from '@buildcache/errdefs';
import {
  LABEL_GC_REF_CONTENT,
  LABEL_UNCOMPRESSED,
  compressionOf,
  compressor,
  decompress,
  layerMediaType,
  type Compression,
  type Descriptor,
} from '@buildcache/snapshot';
import type { CacheRecord } from './records.js';
import { descriptorOf } from './blobs.js';
import { LABEL_RECORD, variantsLeaseId } from './leases.js';
import { resetSize } from './size.js';
import type { DescHandlers } from './context.js';
import { ensureBlob } from './lazy.js';
import { freshWriter } from './ingest.js';

/** Label prefix linking a blob to a variant of it (BuildKit's). */
const LABEL_VARIANT = `${LABEL_GC_REF_CONTENT}.blob-`;
/** Label carrying a stored blob's media type. */
const LABEL_MEDIA_TYPE = 'buildcache.io/blob/mediatype';

/** Digests of the variants linked from `digest`'s labels. */
async function variantDigests(rec: CacheRecord, digest: string): Promise<string[]> {
  try {
    const info = await rec.cm.backend.content.info(digest);
    return Object.entries(info.labels).filter(([k]) => k.startsWith(LABEL_VARIANT)).map(([, v]) => v);
  } catch (err) {
    if (err instanceof ErrNotFound) return [];
    throw err;
  }
}

/** Total size of the variants of the record's blob (0 without any). */
export async function variantsSize(rec: CacheRecord): Promise<number> {
  const blob = rec.md.blob;
  if (!blob || !rec.md.hasVariants) return 0;
  let size = 0;
  for (const d of new Set(await variantDigests(rec, blob))) {
    size += await rec.cm.backend.content.info(d).then((i) => i.size, () => 0);
  }
  return size;
}

/** The record's blob and every stored variant of it, main blob first. */
export async function availableBlobs(rec: CacheRecord): Promise<Descriptor[]> {
  const main = descriptorOf(rec);
  const out = [main];
  for (const d of new Set(await variantDigests(rec, main.digest))) {
    const info = await rec.cm.backend.content.info(d).catch(() => undefined);
    const mediaType = info?.labels[LABEL_MEDIA_TYPE];
    if (info && mediaType && d !== main.digest) out.push({ mediaType, digest: d, size: info.size, annotations: { ...main.annotations } });
  }
  return out;
}

/** The record's blob in `compression` if it or a stored variant has it. */
export async function storedBlobIn(rec: CacheRecord, compression: Compression): Promise<Descriptor | undefined> {
  return (await availableBlobs(rec)).find((d) => compressionOf(d.mediaType) === compression);
}

/**
 * The record's layer in `compression`: its own blob, or a variant converted (once) from it. A blob
 * that is not stored (lazy record) is fetched through `handlers` first.
 */
export async function blobIn(rec: CacheRecord, handlers: DescHandlers, compression: Compression): Promise<Descriptor> {
  const main = descriptorOf(rec);
  if (compressionOf(main.mediaType) === compression) return main;
  return rec.variantFlight.do(`${rec.id}-variant-${compression}`, async () => {
    const found = await storedBlobIn(rec, compression);
    if (found) return found;
    await ensureBlob(rec, handlers);
    const { content, leases } = rec.cm.backend;
    const lease = variantsLeaseId(rec.id);
    await leases.create(lease, { [LABEL_RECORD]: rec.id }).catch((err: unknown) => {
      if (!(err instanceof ErrAlreadyExists)) throw err;
    });
    await rec.lock(async () => {
      if (rec.md.hasVariants) return;
      rec.md.hasVariants = true;
      await rec.md.commit();
    });
    const mediaType = layerMediaType(compression);
    const ref = `buildcache-variant-${rec.id}-${compression}`;
    const writer = await freshWriter(content, ref, { lease });
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        Readable.from(decompress(content.read(main.digest), compressionOf(main.mediaType)!)),
        compressor(compression),
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            hash.update(chunk);
            size += chunk.length;
            writer.write(chunk).then(() => done(), done);
          },
        }),
      );
      const digest = `sha256:${hash.digest('hex')}`;
      await writer.commit({ size, expected: digest });
      // labels by field path, so that they also land on a blob that was already stored
      const own = {
        [LABEL_MEDIA_TYPE]: mediaType,
        [LABEL_UNCOMPRESSED]: main.annotations![LABEL_UNCOMPRESSED]!,
        [`${LABEL_VARIANT}${main.digest}`]: main.digest,
      };
      await content.update({ digest, labels: own }, Object.keys(own).map((k) => `labels.${k}`));
      const link = `${LABEL_VARIANT}${digest}`;
      await content.update({ digest: main.digest, labels: { [link]: digest } }, [`labels.${link}`]);
      await rec.lock(() => resetSize(rec));
      return { mediaType, digest, size, annotations: { ...main.annotations } };
    } catch (err) {
      await writer.close().catch(() => undefined);
      await content.abort(ref).catch(() => undefined);
      throw err;
    }
  });
}
