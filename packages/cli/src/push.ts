/**
 * `buildcache push NAME|RECORD REF`: an image of the image store (its config kept) or a record's
 * chain (minimal config) as an OCI image in a registry.
 */
import type { BlobFormat, CacheManager } from '@buildcache/cache';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import type { ImageStore } from '@buildcache/images';
import type { ContentStore } from '@buildcache/snapshot';
import { pushImage } from '@buildcache/lazy';
import type { RegistryClient } from '@buildcache/registry';
import { UsageError } from './args.js';
import type { Output } from './terminal.js';

const FORMATS: readonly string[] = ['gzip', 'zstd', 'uncompressed', 'estargz'];

/** The `--compression` value. */
export function compressionFlag(value: string | undefined): BlobFormat | undefined {
  if (value === undefined) return undefined;
  if (!FORMATS.includes(value)) throw new UsageError(`--compression: unknown ${JSON.stringify(value)}; use one of ${FORMATS.join(', ')}`);
  return value as BlobFormat;
}

/** Pushes image `name` (from `images`) or record `name`'s chain to `ref`; prints the layers and the manifest digest. */
export async function pushCommand(
  cache: CacheManager,
  images: ImageStore,
  content: ContentStore,
  client: RegistryClient,
  name: string,
  ref: string,
  compression: BlobFormat | undefined,
  out: Output,
): Promise<void> {
  let image;
  try {
    image = images.resolve(name);
  } catch (err) {
    // Not an image name: a record ID. (An image whose layers are gone is an error of its own.)
    if (!(err instanceof ErrNotFound) || err.details.digest !== undefined) throw err;
  }
  const id = image ? image.topLayer?.recordId : name;
  if (id === undefined) throw new ErrInvalidArgument(`image ${name} has no layers; nothing to push`);
  const rec = await cache.get(id);
  try {
    const pushed = await pushImage(client, content, rec, ref, { ...(compression ? { compression } : {}), ...(image ? { config: image.config as Record<string, unknown> } : {}) });
    for (const l of pushed.layers) out.write(`${l.digest}\t${l.size}\n`);
    out.write(`pushed ${ref}@${pushed.manifest.digest}\n`);
  } finally {
    await rec.release();
  }
}
