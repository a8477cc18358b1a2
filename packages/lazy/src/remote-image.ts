/**
 * An image of a registry opened through the layer manager: manifest and config resolved, every
 * layer resolved (eStargz TOCs read), files readable at once — only the chunks they need are fetched.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { formatReference, type RegistryClient, type ResolvedImage, type Descriptor } from '@buildcache/registry';
import type { EstargzStat } from '@buildcache/estargz';
import type { LayerManager } from './manager.js';
import type { LazyLayer } from './layer.js';
import { fileLayer, readdirIn, statIn } from './image-view.js';

/** The parts of an OCI image config this package reads. */
export interface ImageConfig {
  readonly architecture?: string;
  readonly os?: string;
  readonly rootfs: { readonly type: string; readonly diff_ids: readonly string[] };
}

/** An opened remote image; `release()` gives its layers back to the manager. */
export class RemoteImage {
  #released = false;

  constructor(
    /** The reference as given. */
    readonly name: string,
    readonly resolved: ResolvedImage,
    readonly config: ImageConfig,
    /** Layers, base first, each with one use taken. */
    readonly layers: readonly LazyLayer[],
    private readonly manager: LayerManager,
  ) {}

  /** Layer descriptors, base first, as the manifest gives them. */
  get descriptors(): readonly Descriptor[] {
    return this.resolved.manifest.layers;
  }

  /** Metadata of `path` in the image. */
  stat(path: string): Promise<EstargzStat> {
    return statIn(this.layers, path, this.name);
  }

  /** Names in directory `path`. */
  readdir(path: string): Promise<string[]> {
    return readdirIn(this.layers, path, this.name);
  }

  /** Regular file `path`, chunk by chunk (only its chunks are fetched from an eStargz layer). */
  async *readFileChunks(path: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    const layer = await fileLayer(this.layers, path, this.name);
    yield* layer.readFileChunks(path, options);
  }

  /** The whole regular file `path`. */
  async readFile(path: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.readFileChunks(path, options)) parts.push(c);
    return Buffer.concat(parts);
  }

  /** Fetches every layer completely (prefetch, then background pieces) and verifies each blob. */
  async fetchAll(): Promise<void> {
    await Promise.all(this.layers.map((l) => this.manager.startBackground(l)));
  }

  /** Gives the layers back to the manager (each forgotten after its grace period). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const l of this.layers) this.manager.release(l);
  }
}

/**
 * Resolves `ref` (index → platform manifest), reads its config and resolves every layer through
 * `manager` (eStargz layers by footer and TOC only), concurrently.
 */
export async function openRemoteImage(client: RegistryClient, manager: LayerManager, ref: string, options: { signal?: AbortSignal } = {}): Promise<RemoteImage> {
  const resolved = await client.resolve(ref);
  const config = JSON.parse((await client.readBlob(resolved.reference, resolved.manifest.config)).toString('utf8')) as ImageConfig;
  const descs = resolved.manifest.layers;
  if (!Array.isArray(config.rootfs?.diff_ids) || config.rootfs.diff_ids.length !== descs.length) {
    throw new ErrInvalidArgument(`image ${ref}: config lists ${config.rootfs?.diff_ids?.length ?? 0} diff_ids for ${descs.length} layers`, { details: { reference: ref } });
  }
  const name = formatReference(resolved.reference);
  const taken: LazyLayer[] = [];
  try {
    const layers = await Promise.all(descs.map(async (desc) => {
      const layer = await manager.use(name, desc, () => client.openBlob(resolved.reference, desc), options);
      taken.push(layer);
      return layer;
    }));
    return new RemoteImage(ref, resolved, config, layers, manager);
  } catch (err) {
    for (const l of taken) manager.release(l);
    throw err;
  }
}
