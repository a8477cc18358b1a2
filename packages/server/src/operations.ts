/**
 * The operations of the CLI on a cache opened in this process — the image store beside the cache,
 * pull, push and cat — with structured results. The daemon serves exactly these; the CLI runs them
 * directly without `--addr` (through `Workspace`, `@buildcache/server/local`).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BlobFormat, CacheManager } from '@buildcache/cache';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import { LayerManager, openRemoteImage, pullImage, pushImage } from '@buildcache/lazy';
import { RegistryClient } from '@buildcache/registry';
import type { ContentStore } from '@buildcache/snapshot';

/** The image store of a cache and its close. */
export interface OpenImages {
  readonly images: ImageStore;
  close(): Promise<void>;
}

/** Opens the layer store and image store of the cache at `root` (`<root>/layers`, its images in `<root>/layers/images`). */
export async function openImages(cache: CacheManager, root: string, logger?: Logger): Promise<OpenImages> {
  const log = logger ? { logger } : {};
  const layers = await LayerStore.open({ cache, root: join(root, 'layers'), ...log });
  try {
    const images = await ImageStore.open({ layers, root: join(root, 'layers', 'images'), ...log });
    return {
      images,
      async close() {
        try {
          await images.close();
        } finally {
          await layers.close();
        }
      },
    };
  } catch (err) {
    await layers.close();
    throw err;
  }
}

/** A registry client and a layer manager (local copies in `<root>/lazy`). */
export interface Remote {
  readonly client: RegistryClient;
  readonly manager: LayerManager;
  close(): Promise<void>;
}

/** Opens what pull, push and cat need to reach registries. */
export function openRemote(root: string, logger: Logger): Remote {
  const client = new RegistryClient({ logger });
  const manager = new LayerManager({ dir: join(root, 'lazy'), logger, background: false });
  return {
    client,
    manager,
    async close() {
      await manager.close();
      await client.close();
    },
  };
}

/** One layer of a pulled image. */
export interface PulledLayer {
  /** Its record. */
  readonly id: string;
  readonly digest: string;
  readonly format: 'estargz' | 'gzip';
  readonly fetched: number;
  readonly size: number;
  readonly extracted: boolean;
}

/** What a pull recorded: its layers, base first. */
export interface PullReport {
  readonly layers: readonly PulledLayer[];
  /** The top layer's record. */
  readonly top: string;
}

/** Records image `ref`'s layers in the cache; unless `lazy`, fetches, verifies, stores and extracts them. */
export async function pull(cache: CacheManager, remote: Remote, ref: string, lazy: boolean, signal?: AbortSignal): Promise<PullReport> {
  const pulled = await pullImage(cache, remote.client, remote.manager, ref, signal ? { signal } : {});
  try {
    if (!lazy) {
      await pulled.commit();
      await pulled.refs[pulled.refs.length - 1]!.extract();
    }
    const layers = pulled.refs.map((r, i): PulledLayer => {
      const st = pulled.image.layers[i]!.state();
      return { id: r.id, digest: st.digest, format: st.estargz ? 'estargz' : 'gzip', fetched: st.bytesFetched, size: st.size, extracted: r.info().extracted };
    });
    return { layers, top: pulled.refs[pulled.refs.length - 1]!.id };
  } finally {
    await pulled.release();
  }
}

/** What a push wrote: its layers and the manifest digest. */
export interface PushReport {
  readonly layers: readonly { readonly digest: string; readonly size: number }[];
  readonly digest: string;
}

/** Pushes image `name` of `images` (its config kept), or record `name`'s chain (minimal config), to `ref`. */
export async function push(
  cache: CacheManager, images: ImageStore, content: ContentStore, remote: Remote, name: string, ref: string, compression: BlobFormat | undefined,
): Promise<PushReport> {
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
    const pushed = await pushImage(remote.client, content, rec, ref, { ...(compression ? { compression } : {}), ...(image ? { config: image.config as Record<string, unknown> } : {}) });
    return { layers: pushed.layers.map((l) => ({ digest: l.digest, size: l.size })), digest: pushed.manifest.digest };
  } finally {
    await rec.release();
  }
}

/** File `path` of remote image `ref`, in chunks (only its chunks are fetched from eStargz layers). */
export async function* cat(remote: Remote, ref: string, path: string): AsyncGenerator<Buffer> {
  const image = await openRemoteImage(remote.client, remote.manager, ref);
  try {
    yield* image.readFileChunks(path);
  } finally {
    image.release();
  }
}
