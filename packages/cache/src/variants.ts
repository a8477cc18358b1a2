/**
 * Compression variants of a record's blob (`getRemote({ compression, force: true })`): the blob is
 * converted once, stored under the record's non-flat `<id>-variants` lease, and linked to the main
 * blob by `containerd.io/gc.ref.content.blob-<digest>` labels both ways, so that GC keeps the two
 * together. Variants count in the record's size.
 */
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrAlreadyExists, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, convertToEstargz } from '@buildcache/estargz';
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
/** Labels of an eStargz variant: the annotations its descriptor carries. */
const LABEL_ESTARGZ_TOC = 'buildcache.io/blob/estargz.toc-digest';
const LABEL_ESTARGZ_SIZE = 'buildcache.io/blob/estargz.uncompressed-size';

/** A layer blob's format: its media type's compression, or `estargz` for a gzip blob with a TOC digest annotation. */
export type BlobFormat = Compression | 'estargz';

/** Every blob format, as users name them (`--compression`, `compression=`). */
export const BLOB_FORMATS: readonly BlobFormat[] = ['gzip', 'zstd', 'uncompressed', 'estargz'];

/** The blob format a user named `value` for `what` (e.g. `--compression`); undefined when unset or empty. Throws ErrInvalidArgument for an unknown name. */
export function parseBlobFormat(value: string | undefined, what: string): BlobFormat | undefined {
  if (value === undefined || value === '') return undefined;
  if (!(BLOB_FORMATS as readonly string[]).includes(value)) {
    throw new ErrInvalidArgument(`${what}: unknown ${JSON.stringify(value)}; use one of ${BLOB_FORMATS.join(', ')}`);
  }
  return value as BlobFormat;
}

/** The format of a layer descriptor. */
export function formatOf(desc: Descriptor): BlobFormat | undefined {
  return desc.annotations?.[TOC_DIGEST_ANNOTATION] !== undefined ? 'estargz' : compressionOf(desc.mediaType);
}

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
    if (!info || !mediaType || d === main.digest) continue;
    const toc = info.labels[LABEL_ESTARGZ_TOC];
    const { [TOC_DIGEST_ANNOTATION]: _toc, [UNCOMPRESSED_SIZE_ANNOTATION]: _size, ...plain } = main.annotations ?? {};
    const annotations = toc === undefined ? plain : {
      ...plain,
      [LABEL_UNCOMPRESSED]: info.labels[LABEL_UNCOMPRESSED]!,
      [TOC_DIGEST_ANNOTATION]: toc,
      [UNCOMPRESSED_SIZE_ANNOTATION]: info.labels[LABEL_ESTARGZ_SIZE]!,
    };
    out.push({ mediaType, digest: d, size: info.size, annotations });
  }
  return out;
}

/** The record's blob in `format` if it or a stored variant has it. */
export async function storedBlobIn(rec: CacheRecord, format: BlobFormat): Promise<Descriptor | undefined> {
  return (await availableBlobs(rec)).find((d) => formatOf(d) === format);
}

/** Writes `main` in `format` through `write`; returns the new blob's digest, size, and labels beyond the media type. */
async function convert(rec: CacheRecord, main: Descriptor, format: BlobFormat, write: (chunk: Buffer) => Promise<void>): Promise<{ digest: string; size: number; labels: Record<string, string> }> {
  const { content } = rec.cm.backend;
  if (format === 'estargz') {
    const r = await convertToEstargz(content.read(main.digest), write);
    return {
      digest: r.digest,
      size: r.size,
      labels: { [LABEL_UNCOMPRESSED]: r.diffID, [LABEL_ESTARGZ_TOC]: r.tocDigest, [LABEL_ESTARGZ_SIZE]: String(r.uncompressedSize) },
    };
  }
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    Readable.from(decompress(content.read(main.digest), compressionOf(main.mediaType)!)),
    compressor(format),
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        write(chunk).then(() => done(), done);
      },
    }),
  );
  return { digest: `sha256:${hash.digest('hex')}`, size, labels: { [LABEL_UNCOMPRESSED]: main.annotations![LABEL_UNCOMPRESSED]! } };
}

/**
 * The record's layer in `format`: its own blob, or a variant converted (once) from it. A blob that
 * is not stored (lazy record) is fetched through `handlers` first. An eStargz variant has a diffID
 * of its own (its TOC and landmark are tar entries), which its descriptor carries.
 */
export async function blobIn(rec: CacheRecord, handlers: DescHandlers, format: BlobFormat): Promise<Descriptor> {
  const main = descriptorOf(rec);
  if (formatOf(main) === format) return main;
  return rec.variantFlight.do(`${rec.id}-variant-${format}`, async () => {
    const found = await storedBlobIn(rec, format);
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
    const mediaType = layerMediaType(format === 'estargz' ? 'gzip' : format);
    const ref = `buildcache-variant-${rec.id}-${format}`;
    const writer = await freshWriter(content, ref, { lease });
    try {
      const { digest, size, labels } = await convert(rec, main, format, (chunk) => writer.write(chunk));
      await writer.commit({ size, expected: digest });
      // labels by field path, so that they also land on a blob that was already stored
      const own = { [LABEL_MEDIA_TYPE]: mediaType, ...labels, [`${LABEL_VARIANT}${main.digest}`]: main.digest };
      await content.update({ digest, labels: own }, Object.keys(own).map((k) => `labels.${k}`));
      const link = `${LABEL_VARIANT}${digest}`;
      await content.update({ digest: main.digest, labels: { [link]: digest } }, [`labels.${link}`]);
      await rec.lock(() => resetSize(rec));
      return (await storedBlobIn(rec, format))!;
    } catch (err) {
      await writer.close().catch(() => undefined);
      await content.abort(ref).catch(() => undefined);
      throw err;
    }
  });
}
