/**
 * What a build's `FROM` starts from: nothing (`scratch`), an image of the image store (imported,
 * or named by an earlier build), or an image of a registry pulled as lazy records — nothing but its
 * manifest and config is fetched until a step mounts it. Each gives the cache input of the first
 * step: the image store's image ID, or the registry manifest's digest (so a moved tag reruns).
 */
import { ErrNotFound, ErrUnavailable } from '@buildcache/errdefs';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import type { ImageConfigJSON, ImageStore, ResolvedImage } from '@buildcache/images';
import { pullImage, type LayerManager, type PulledImage } from '@buildcache/lazy';
import type { RegistryClient } from '@buildcache/registry';
import { SCRATCH_CONFIG, type ImageConfig } from './dockerfile/plan.js';
import type { Vertex } from './progress.js';

/** Where `FROM` looks for images that are not in the image store. */
export interface RegistryAccess {
  /** The registry client (auth from Docker's config.json, loopback over http). */
  readonly client: RegistryClient;
  /** The layer manager the pulled layers are read through (best without background fetch: a base is fetched only when mounted). */
  readonly layers: LayerManager;
}

/** A build's base image. */
export interface Base {
  /** The top layer's record (a handle of the base's own; none for scratch or an image without layers). */
  readonly ref?: ImmutableRef;
  /** The cache input of the first step (none for scratch). */
  readonly key?: string;
  readonly config: ImageConfig;
  /** Makes every layer blob of the base local (for an archive of the build). */
  fetch(): Promise<void>;
  /** Gives back what the base holds besides `ref` (the pulled image's layers). */
  release(): Promise<void>;
}

/** Where a base is looked for. */
export interface BaseSources {
  readonly cache: CacheManager;
  readonly images?: ImageStore;
  readonly registry?: RegistryAccess;
}

/** The runtime config a build inherits from an image's config JSON. */
export function inheritedConfig(json: ImageConfigJSON): ImageConfig {
  const c = json.config ?? {};
  return {
    Env: c.Env ?? [], WorkingDir: c.WorkingDir ?? '', User: c.User ?? '', Labels: c.Labels ?? {},
    ...(c.Cmd ? { Cmd: c.Cmd } : {}), ...(c.Entrypoint ? { Entrypoint: c.Entrypoint } : {}),
  };
}

const nothing = async (): Promise<void> => undefined;

/**
 * The base `FROM image` names: scratch, else the image store's image (local images first, as
 * Docker's builder without `--pull`), else the registry's. `progress` opens the metadata vertex.
 */
export async function resolveBase(src: BaseSources, image: string, progress: (name: string) => Vertex): Promise<Base> {
  if (image === 'scratch') return { config: SCRATCH_CONFIG, fetch: nothing, release: nothing };
  const stored = storedImage(src.images, image);
  if (stored) {
    const ref = stored.topLayer ? await takeRecord(src.cache, image, stored.topLayer.recordId) : undefined;
    return { ...(ref ? { ref } : {}), key: stored.id, config: inheritedConfig(stored.config), fetch: nothing, release: nothing };
  }
  if (!src.registry) {
    throw new ErrNotFound(`image ${JSON.stringify(image)} not found: import it with buildcache import, build it with buildcache build -t ${image}, or use FROM scratch`, { details: { id: image } });
  }
  const vertex = progress(`[internal] load metadata for ${image}`);
  try {
    const pulled = await pull(src.cache, src.registry, image);
    vertex.log(`resolved ${pulled.image.resolved.descriptor.digest}`);
    vertex.done();
    const top = pulled.refs.at(-1)?.clone();
    return {
      ...(top ? { ref: top } : {}),
      key: pulled.image.resolved.descriptor.digest,
      config: inheritedConfig(pulled.image.config as unknown as ImageConfigJSON),
      fetch: () => pulled.commit(),
      release: () => pulled.release(),
    };
  } catch (err) {
    vertex.error(err instanceof Error ? err.message.split('\n')[0]! : String(err));
    throw err;
  }
}

/** The image store's image `name`, or undefined when the store has none of that name. */
function storedImage(images: ImageStore | undefined, name: string): ResolvedImage | undefined {
  if (!images) return undefined;
  try {
    return images.resolve(name);
  } catch (err) {
    // Unknown name (a missing layer of a known image names its digest and keeps its own message).
    if (err instanceof ErrNotFound && err.details.digest === undefined) return undefined;
    throw err;
  }
}

/** A handle on a stored image's top record; a pruned one says to import or build the image again. */
async function takeRecord(cache: CacheManager, name: string, record: string): Promise<ImmutableRef> {
  try {
    return await cache.get(record);
  } catch (err) {
    if (!(err instanceof ErrNotFound)) throw err;
    throw new ErrNotFound(`image ${name}: its layers are no longer in the cache (pruned?); import or build it again`, { details: { id: name } });
  }
}

/**
 * `ref` resolved by the registry (its tag each build, as BuildKit does) and recorded as lazy
 * records. A registry that cannot be reached fails the build (even when every step is cached: the
 * tag may have moved) with ErrUnavailable; an unknown image with ErrNotFound saying what to do.
 */
async function pull(cache: CacheManager, registry: RegistryAccess, ref: string): Promise<PulledImage> {
  try {
    return await pullImage(cache, registry.client, registry.layers, ref);
  } catch (err) {
    if (err instanceof ErrUnavailable) {
      throw new ErrUnavailable(`FROM ${ref}: the registry cannot be reached, and the tag is resolved on every build (${err.message}); start the registry, or import the image (buildcache import) and build FROM it`, { cause: err, details: { reference: ref } });
    }
    if (err instanceof ErrNotFound) {
      throw new ErrNotFound(`image ${JSON.stringify(ref)} not found: not in the image store (buildcache images), and the registry has no such image (${err.message})`, { cause: err, details: { id: ref } });
    }
    throw err;
  }
}
