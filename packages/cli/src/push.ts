/** `buildcache push RECORD REF`: a record's chain as an OCI image (minimal config) in a registry. */
import type { BlobFormat, CacheManager } from '@buildcache/cache';
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

/** Pushes record `id`'s chain to `ref`; prints the manifest digest. */
export async function pushCommand(cache: CacheManager, content: ContentStore, client: RegistryClient, id: string, ref: string, compression: BlobFormat | undefined, out: Output): Promise<void> {
  const rec = await cache.get(id);
  try {
    const pushed = await pushImage(client, content, rec, ref, compression ? { compression } : {});
    for (const l of pushed.layers) out.write(`${l.digest}\t${l.size}\n`);
    out.write(`pushed ${ref}@${pushed.manifest.digest}\n`);
  } finally {
    await rec.release();
  }
}
