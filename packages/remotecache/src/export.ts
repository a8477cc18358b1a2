/**
 * Exporting a build's cache: the layer blobs of the results (all steps with `mode: 'max'`, the final
 * one with `min`), then the cache description, then the manifest that names them — so a manifest
 * never names a blob that is not stored, and an interrupted export leaves the previous tag intact.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { BlobFormat, ImmutableRef } from '@buildcache/cache';
import { ErrNotFound } from '@buildcache/errdefs';
import { LABEL_UNCOMPRESSED, type ContentStore, type Descriptor } from '@buildcache/snapshot';
import { marshalConfig, MEDIA_CACHE_CONFIG, type ExportStep } from './config.js';
import type { CacheStore } from './stores.js';

/** Media type of the manifest a cache is pushed as (BuildKit's `image-manifest=true` layout). */
export const MEDIA_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Annotation BuildKit gives a layer's creation time. */
export const ANNOTATION_CREATED = 'buildkit/createdat';

/** One step of a build: its key parts and, when it has one on this machine, its result record. */
export interface StepResult {
  readonly opKey: string;
  readonly inputs: readonly string[];
  /** The result; the caller keeps the handle and releases it after the export. */
  readonly ref?: ImmutableRef;
  /** When the result was made (ms since the epoch); written as BuildKit's `createdAt`. */
  readonly createdAt?: number;
}

/** Options of `exportCache`. */
export interface ExportOptions {
  /** `min` (default): the final result's layers and the key chain leading to it; `max`: every step's layers. */
  readonly mode?: 'min' | 'max';
  /** Layer format (default gzip, so that blobs match the image's). */
  readonly compression?: BlobFormat;
  readonly logger?: Logger;
}

/** What an export stored. */
export interface ExportedCache {
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  /** Blobs sent (the others were already there). */
  readonly uploaded: number;
  readonly uploadedBytes: number;
}

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The blob's bytes from the content store, fetching a lazy record's blob first when it is not local. */
async function* blobBytes(content: ContentStore, ref: ImmutableRef, desc: Descriptor): AsyncIterable<Uint8Array> {
  try {
    await content.info(desc.digest);
  } catch (err) {
    if (!(err instanceof ErrNotFound)) throw err;
    await ref.fetchBlob();
  }
  yield* content.read(desc.digest);
}

/** Exports `steps` (in build order, the last being the final result) to `store`. */
export async function exportCache(store: CacheStore, content: ContentStore, steps: readonly StepResult[], options: ExportOptions = {}): Promise<ExportedCache> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const mode = options.mode ?? 'min';
  const compression = options.compression ?? 'gzip';
  const blobs = new Map<string, { desc: Descriptor; ref: ImmutableRef }>();
  const exportSteps: ExportStep[] = [];
  for (const [i, s] of steps.entries()) {
    const withResult = s.ref !== undefined && (mode === 'max' || i === steps.length - 1);
    if (!withResult) {
      exportSteps.push({ opKey: s.opKey, inputs: s.inputs });
      continue;
    }
    const descs = await s.ref!.getRemote({ compression });
    for (const d of descs) if (!blobs.has(d.digest)) blobs.set(d.digest, { desc: d, ref: s.ref! });
    exportSteps.push({
      opKey: s.opKey,
      inputs: s.inputs,
      blobs: descs.map((d) => d.digest),
      ...(s.createdAt !== undefined ? { createdAt: new Date(s.createdAt).toISOString() } : {}),
    });
  }
  let uploaded = 0;
  let uploadedBytes = 0;
  const limit = pLimit(4);
  await Promise.all(
    [...blobs.values()].map(({ desc, ref }) =>
      limit(async () => {
        if (await store.putBlob(desc, () => blobBytes(content, ref, desc))) {
          uploaded++;
          uploadedBytes += desc.size;
        }
      }),
    ),
  );
  const configBytes = marshalConfig(exportSteps);
  const config: Descriptor = { mediaType: MEDIA_CACHE_CONFIG, digest: digestOf(configBytes), size: configBytes.length };
  await store.putBlob(config, async function* () {
    yield configBytes;
  });
  const layers = [...blobs.values()].map(({ desc }) => {
    const created = exportSteps.find((s) => s.blobs?.includes(desc.digest))?.createdAt;
    return {
      mediaType: desc.mediaType,
      digest: desc.digest,
      size: desc.size,
      annotations: { ...desc.annotations, ...(created ? { [ANNOTATION_CREATED]: created } : {}) } as Record<string, string>,
    };
  });
  for (const l of layers) {
    if (!l.annotations[LABEL_UNCOMPRESSED]) throw new ErrNotFound(`layer ${l.digest} has no diffID annotation; it cannot be exported as cache`, { details: { digest: l.digest } });
  }
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_OCI_MANIFEST, config, layers }));
  const manifest = await store.putManifest(manifestBytes, MEDIA_OCI_MANIFEST);
  logger.info({ store: store.name, manifest: manifest.digest, layers: layers.length, uploaded, uploadedBytes }, 'cache exported');
  return { manifest, config, layers, uploaded, uploadedBytes };
}
