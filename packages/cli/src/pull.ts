/** `buildcache pull REF`: records an image's layers in the cache; without `--lazy` fetches, verifies, stores and extracts them. */
import type { CacheManager } from '@buildcache/cache';
import type { LayerManager } from '@buildcache/lazy';
import { pullImage } from '@buildcache/lazy';
import type { RegistryClient } from '@buildcache/registry';
import type { Output } from './terminal.js';

/** Options of `pull`. */
export interface PullCommandOptions {
  /** Only record the layers (footers and TOCs read); fetch nothing else. */
  readonly lazy: boolean;
}

/** Pulls `ref` and prints one line per layer: record ID, blob digest, format, bytes fetched of size. */
export async function pullCommand(cache: CacheManager, client: RegistryClient, manager: LayerManager, ref: string, options: PullCommandOptions, out: Output): Promise<void> {
  const pulled = await pullImage(cache, client, manager, ref);
  try {
    if (!options.lazy) {
      await pulled.commit();
      await pulled.refs[pulled.refs.length - 1]!.extract();
    }
    for (const [i, r] of pulled.refs.entries()) {
      const st = pulled.image.layers[i]!.state();
      out.write(`${r.id}\t${st.digest}\t${st.estargz ? 'estargz' : 'gzip'}\t${st.bytesFetched}/${st.size}${r.info().extracted ? '\textracted' : ''}\n`);
    }
    out.write(`pulled ${ref}: ${pulled.refs.length} layers${options.lazy ? ' (lazy)' : ''}, top record ${pulled.refs[pulled.refs.length - 1]!.id}\n`);
  } finally {
    await pulled.release();
  }
}
