/**
 * Diffs in a compression the daemon's differ lacks (zstd before containerd 2.1): the daemon diffs to
 * an uncompressed blob held by a temporary lease, this process compresses it, and the result is
 * written back through the content service, as BuildKit does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import type { Client } from '@containerd/leases-ts';
import { LABEL_GC_EXPIRE, LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER, layerMediaType } from '../labels.js';
import type { Compression } from '../labels.js';
import { compressor } from '../embedded/archive/compression.js';
import type { Descriptor, LeasedOptions, Mount } from '../types.js';

/** Calls that take as long as the data does: no deadline, only the caller's signal. */
export const NO_DEADLINE = { timeoutMs: 0 } as const;

/** How long the temporary lease of the uncompressed diff lives if this process dies mid-way. */
const TEMP_LEASE_TTL_MS = 3600_000;

/** Options of `compressedDiff`. */
export interface CompressedDiffOptions extends LeasedOptions {
  readonly ref?: string;
  readonly signal?: AbortSignal;
}

/**
 * Writes the changes from `lower` to `upper` as a `compression` layer blob under `options.lease`:
 * containerd diffs uncompressed, this process compresses. The blob and the returned descriptor
 * carry `containerd.io/uncompressed` (the diffID).
 */
export async function compressedDiff(
  client: Client,
  lower: readonly Mount[],
  upper: readonly Mount[],
  compression: Exclude<Compression, 'uncompressed'>,
  options: CompressedDiffOptions = {},
): Promise<Descriptor> {
  const signal = options.signal ? { signal: options.signal } : {};
  const tempLease = `buildcache-diff-${randomBytes(8).toString('hex')}`;
  await client.leases.create(tempLease, { [LABEL_GC_EXPIRE]: new Date(Date.now() + TEMP_LEASE_TTL_MS).toISOString() });
  try {
    const tar = await client.diff.diff(lower, upper, { mediaType: MEDIA_TYPE_LAYER, lease: tempLease, ...NO_DEADLINE, ...signal });
    const ref = options.ref ?? `buildcache-${compression}-${tar.digest.slice(7, 23)}-${randomBytes(4).toString('hex')}`;
    const writer = await client.content.writer(ref, { ...(options.lease ? { lease: options.lease } : {}), ...NO_DEADLINE, ...signal });
    try {
      const hash = createHash('sha256');
      let size = 0;
      const source = Readable.from(client.content.read(tar.digest, {}, { ...NO_DEADLINE, ...signal }));
      // pipeline, not pipe: a failed read destroys the compressor and ends the loop with the error
      const compressed = pipeline(source, compressor(compression), () => undefined) as AsyncIterable<Buffer>;
      for await (const chunk of compressed) {
        hash.update(chunk);
        size += chunk.length;
        await writer.write(chunk);
      }
      const digest = `sha256:${hash.digest('hex')}`;
      const labels = { ...(options.labels ?? {}), [LABEL_UNCOMPRESSED]: tar.digest };
      await writer.commit({ size, expected: digest, labels });
      return { mediaType: layerMediaType(compression), digest, size, annotations: { [LABEL_UNCOMPRESSED]: tar.digest } };
    } catch (err) {
      await writer.close().catch(() => undefined);
      await client.content.abort(ref).catch(() => undefined);
      throw err;
    }
  } finally {
    await client.leases.delete(tempLease).catch(() => undefined);
  }
}
