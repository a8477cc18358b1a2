/**
 * Pulling an image into the cache lazily: one record per layer (getByBlob, chained), each backed by
 * the layer manager — extraction streams the blob from chunks already fetched (the rest on demand),
 * and `commit()` makes every blob local, verified and stored in the content store.
 */
import type { CacheManager, DescHandler, ImmutableRef } from '@buildcache/cache';
import { LABEL_UNCOMPRESSED, type Descriptor } from '@buildcache/snapshot';
import type { RegistryClient } from '@buildcache/registry';
import type { LayerManager } from './manager.js';
import type { LazyLayer } from './layer.js';
import { openRemoteImage, type RemoteImage } from './remote-image.js';

/** An image pulled lazily into the cache. */
export interface PulledImage {
  readonly image: RemoteImage;
  /** One ref per layer, base first; the last is the image's top layer. */
  readonly refs: readonly ImmutableRef[];
  /** Fetches every layer in full, verifies it and stores it in the content store under its record. */
  commit(): Promise<void>;
  /** Releases the refs and gives the layers back to the manager. */
  release(): Promise<void>;
}

/** A descriptor handler whose provider streams the blob from the lazy layer (local chunks first). */
function handlerOf(layer: LazyLayer): DescHandler {
  return {
    provider: { fetch: (_desc, options) => layer.stream(options) },
    ...(layer.desc.annotations ? { annotations: layer.desc.annotations } : {}),
  };
}

/** Opens `ref` through `manager` and records its layers in `cache` as lazy records (nothing is fetched but footers and TOCs). */
export async function pullImage(cache: CacheManager, client: RegistryClient, manager: LayerManager, ref: string, options: { signal?: AbortSignal } = {}): Promise<PulledImage> {
  const image = await openRemoteImage(client, manager, ref, options);
  const handlers = new Map(image.layers.map((l) => [l.digest, handlerOf(l)] as const));
  const refs: ImmutableRef[] = [];
  try {
    let parent: ImmutableRef | undefined;
    for (const [i, layer] of image.layers.entries()) {
      const desc: Descriptor = { ...layer.desc, annotations: { ...layer.desc.annotations, [LABEL_UNCOMPRESSED]: image.config.rootfs.diff_ids[i]! } };
      parent = await cache.getByBlob(desc, parent, { descHandlers: handlers, imageRef: image.name, description: `pulled ${image.name} layer ${i}` });
      refs.push(parent);
    }
  } catch (err) {
    for (const r of refs) await r.release().catch(() => undefined);
    image.release();
    throw err;
  }
  return {
    image,
    refs,
    async commit() {
      await Promise.all(image.layers.map(async (layer, i) => {
        await manager.startBackground(layer);
        await refs[i]!.fetchBlob();
      }));
    },
    async release() {
      for (const r of refs) if (!r.released) await r.release();
      image.release();
    },
  };
}
