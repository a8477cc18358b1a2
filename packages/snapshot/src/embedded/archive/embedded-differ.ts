/**
 * `EmbeddedDiffer`: the embedded backend's Differ. Uses the overlay fast path when `upper` is an
 * overlay whose lowerdirs are exactly `lower`'s layers, else mounts both read-only and compares
 * the trees. The tar is compressed on the way into the content store; both digests are computed
 * while streaming.
 */
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { ErrInvalidArgument, ErrNotImplemented } from '@buildcache/errdefs';
import type { Logger } from 'pino';
import { LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER_GZIP, compressionOf } from '../../labels.js';
import type { Compression } from '../../labels.js';
import { bindSource, overlayDirs } from '../../mount.js';
import type { ActiveMount, ContentStore, ContentWriter, Descriptor, Differ, LeasedOptions, Mount, Mounter } from '../../types.js';
import { compressor } from './compression.js';
import { writeDiff } from './diff.js';
import type { DiffResult, DiffSource } from './diff.js';
import type { ArchiveOptions } from './embedded-applier.js';

/** The layer dirs of a read-only lower mount list (nearest first), or undefined when not plain layers. */
function layersOf(mounts: readonly Mount[]): string[] | undefined {
  if (mounts.length === 0) return [];
  const bind = bindSource(mounts);
  if (bind) return [bind.source];
  const ov = overlayDirs(mounts);
  return ov && !ov.upper ? ov.lowers : undefined;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Writes layer blobs of the difference between two mount lists. */
export class EmbeddedDiffer implements Differ {
  private readonly logger: Logger | undefined;

  constructor(
    private readonly content: ContentStore,
    private readonly mounter: Mounter,
    options: ArchiveOptions = {},
  ) {
    this.logger = options.logger?.child({ component: 'archive/differ' });
  }

  async compare(
    lower: readonly Mount[],
    upper: readonly Mount[],
    options: LeasedOptions & { mediaType?: string; ref?: string; signal?: AbortSignal } = {},
  ): Promise<Descriptor> {
    const mediaType = options.mediaType || MEDIA_TYPE_LAYER_GZIP;
    const compression = compressionOf(mediaType);
    if (!compression) throw new ErrInvalidArgument(`unsupported diff media type ${JSON.stringify(mediaType)}`);
    const ref = options.ref ?? `diff-${randomUUID()}`;
    const ov = overlayDirs(upper);
    const lowerLayers = layersOf(lower);
    const mounted: ActiveMount[] = [];
    const mountRo = async (mounts: readonly Mount[]): Promise<string> => {
      const m = await this.mounter.mount(this.mounter.readonly(mounts));
      mounted.push(m);
      return m.target;
    };
    try {
      const lowerRoot = lower.length ? await mountRo(lower) : undefined;
      if (ov?.upper && lowerLayers && sameList(ov.lowers, lowerLayers)) {
        const source: DiffSource = { kind: 'overlay-upper', upperDir: ov.upper, ...(lowerRoot ? { lower: lowerRoot } : {}) };
        try {
          return await this.store(source, ref, mediaType, compression, options);
        } catch (err) {
          if (!(err instanceof ErrNotImplemented)) throw err;
          this.logger?.debug({ ref, reason: err.message }, 'overlay fast path not usable; comparing trees');
        }
      }
      const upperRoot = await mountRo(upper);
      return await this.store({ kind: 'trees', upper: upperRoot, ...(lowerRoot ? { lower: lowerRoot } : {}) }, ref, mediaType, compression, options);
    } finally {
      for (const m of mounted.reverse()) await m.unmount();
    }
  }

  private async openWriter(ref: string, lease: string | undefined): Promise<ContentWriter> {
    const opts = lease ? { lease } : {};
    let writer = await this.content.writer(ref, opts);
    if (writer.offset !== 0) {
      await writer.close();
      await this.content.abort(ref);
      writer = await this.content.writer(ref, opts);
    }
    return writer;
  }

  /** Streams the diff through the compressor into the ingest `ref` and commits it. */
  private async store(
    source: DiffSource,
    ref: string,
    mediaType: string,
    compression: Compression,
    options: LeasedOptions & { signal?: AbortSignal },
  ): Promise<Descriptor> {
    const writer = await this.openWriter(ref, options.lease);
    const comp = compressor(compression);
    const blobHash = createHash('sha256');
    let size = 0;
    const consume = (async () => {
      try {
        for await (const c of comp as AsyncIterable<Buffer>) {
          blobHash.update(c);
          size += c.length;
          await writer.write(c);
        }
      } catch (err) {
        comp.destroy(err as Error);
        throw err;
      }
    })();
    let result: DiffResult;
    try {
      result = await writeDiff(
        source,
        async (chunk) => {
          if (!comp.write(chunk)) await once(comp, 'drain');
        },
        options.signal ? { signal: options.signal } : {},
      );
      comp.end();
      await consume;
    } catch (err) {
      comp.destroy();
      await consume.catch(() => undefined);
      await writer.close().catch(() => undefined);
      await this.content.abort(ref).catch(() => undefined);
      throw err;
    }
    const digest = `sha256:${blobHash.digest('hex')}`;
    const labels = { ...(options.labels ?? {}), ...(compression === 'uncompressed' ? {} : { [LABEL_UNCOMPRESSED]: result.diffID }) };
    await writer.commit({ size, expected: digest, labels });
    this.logger?.debug({ ref, digest, diffID: result.diffID, size }, 'diff written');
    return {
      mediaType,
      digest,
      size,
      ...(compression === 'uncompressed' ? {} : { annotations: { [LABEL_UNCOMPRESSED]: result.diffID } }),
    };
  }
}
