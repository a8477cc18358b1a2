/**
 * The layer store: Docker's read-only layers as records of one cache. A layer is registered from a
 * tar stream (applied by the safe applier while its diffID and tar-split metadata are computed in
 * the same pass), found by chain ID, reference counted, and exported again byte for byte.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { CacheManager, ImmutableRef, MutableRef } from '@buildcache/cache';
import { BuildcacheError, ErrDigestMismatch, ErrInvalidArgument, ErrMaxDepthExceeded, ErrNotFound, ErrReleased } from '@buildcache/errdefs';
import { applyLayer, decompress } from '@buildcache/snapshot';
import { durableRename, layerDir, layersDir, tmpDir, writeMeta, type LayerMeta } from './meta.js';
import { reassemble, TarSplitRecorder } from './tar-split.js';

/** Docker's limit on layers in one chain. */
export const MAX_DEPTH = 125;

/** A byte stream a layer is read from. */
export type LayerSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Options of `register`. */
export interface RegisterOptions {
  /** The blob's descriptor: its digest (and size) are verified against the bytes read. */
  readonly descriptor?: { readonly mediaType: string; readonly digest: string; readonly size: number };
}

/** Options of `LayerStore.open`. */
export interface LayerStoreOptions {
  readonly cache: CacheManager;
  /** The store's own directory (layer metadata and tar-split files). */
  readonly root: string;
  /** Most layers in one chain (default and most: Docker's 125). */
  readonly maxDepth?: number;
  readonly logger?: Logger;
}

/** What `release` reports of each removed layer. */
export interface RemovedLayer {
  readonly chainID: string;
  readonly diffID: string;
  readonly size: number;
}

/** One reference to a registered layer; give it back with `store.release(layer)`. */
export class Layer {
  #released = false;
  constructor(
    private readonly store: LayerStore,
    readonly meta: Readonly<LayerMeta>,
  ) {}
  get chainID(): string { return this.meta.chainID; }
  get diffID(): string { return this.meta.diffID; }
  get parent(): string | undefined { return this.meta.parent; }
  /** Bytes of the uncompressed tar. */
  get size(): number { return this.meta.size; }
  /** The original uncompressed tar (sha256 equals `diffID`). */
  tarStream(): AsyncGenerator<Buffer> {
    this.check();
    return this.store.tarStreamOf(this.meta);
  }
  /** @internal Marks this handle used up (by `store.release`). */
  take(): void {
    this.check();
    this.#released = true;
  }
  private check(): void {
    if (this.#released) throw new ErrReleased(`layer ${this.chainID} was already released`, { details: { id: this.chainID } });
  }
}

async function* hashing(src: LayerSource, hash: ReturnType<typeof createHash>, count: { n: number }): AsyncGenerator<Uint8Array> {
  for await (const c of src) {
    hash.update(c);
    count.n += c.length;
    yield c;
  }
}

async function* recording(src: AsyncIterable<Buffer>, rec: TarSplitRecorder): AsyncGenerator<Buffer> {
  for await (const c of src) {
    await rec.write(c);
    yield c;
  }
}

/** The same typed error with the layer named in its message and details. */
function naming(err: unknown, layer: string): unknown {
  if (!(err instanceof BuildcacheError)) return err;
  const Ctor = err.constructor as new (m: string, o: { cause: unknown; details: object }) => BuildcacheError;
  return new Ctor(`layer ${layer}: ${err.message}`, { cause: err, details: { ...err.details, layer } });
}

/** Docker's layer store over one cache. */
export class LayerStore {
  #lock: Promise<unknown> = Promise.resolve();
  readonly #layers = new Map<string, LayerMeta>();
  readonly #log: Logger;

  private constructor(
    private readonly cache: CacheManager,
    private readonly root: string,
    private readonly maxDepth: number,
    logger: Logger,
  ) {
    this.#log = logger;
  }

  /** Opens the store, finishing or undoing registrations and deletions a crash interrupted. */
  static async open(options: LayerStoreOptions): Promise<LayerStore> {
    const store = new LayerStore(options.cache, options.root, Math.min(options.maxDepth ?? MAX_DEPTH, MAX_DEPTH), options.logger ?? pino({ level: 'silent' }));
    await mkdir(layersDir(options.root), { recursive: true });
    await mkdir(tmpDir(options.root), { recursive: true });
    for (const name of await readdir(tmpDir(options.root))) {
      await store.dropRecord(name.split('.')[0]!);
      await rm(join(tmpDir(options.root), name), { recursive: true, force: true });
    }
    for (const hex of await readdir(layersDir(options.root))) {
      const meta = JSON.parse(await readFile(join(layersDir(options.root), hex, 'layer.json'), 'utf8')) as LayerMeta;
      store.#layers.set(meta.chainID, meta);
    }
    return store;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /** Deletes a cache record the store no longer wants (absent: nothing to do). */
  private async dropRecord(id: string): Promise<void> {
    await this.cache.prune([{ all: true, filters: [`id==${id}`] }]);
  }

  /**
   * Registers the layer `stream` holds on top of `parent` (a chain ID): applies it, computes its
   * diffID and records its tar-split metadata in one pass. An existing chain ID gets one more
   * reference instead (the stream is still read and verified). Bad input changes nothing.
   */
  async register(stream: LayerSource, parent?: string, options: RegisterOptions = {}): Promise<Layer> {
    const desc = options.descriptor;
    const name = desc?.digest ?? `on ${parent ?? 'no parent'}`;
    const parentMeta = parent === undefined ? undefined : this.#layers.get(parent);
    if (parent !== undefined && !parentMeta) throw new ErrNotFound(`parent layer ${parent} does not exist; register it first`, { details: { id: parent } });
    const depth = (parentMeta?.depth ?? 0) + 1;
    if (depth > this.maxDepth) {
      throw new ErrMaxDepthExceeded(`layer ${name} would be layer ${depth} of its chain; at most ${this.maxDepth} are allowed`, { details: { id: parent, depth } });
    }
    if (desc && !/^sha256:[0-9a-f]{64}$/.test(desc.digest)) throw new ErrInvalidArgument(`descriptor digest ${JSON.stringify(desc.digest)} is not a sha256 digest`);
    let parentRef: ImmutableRef | undefined;
    let mref: MutableRef | undefined;
    let work: string | undefined;
    try {
      if (parentMeta) parentRef = await this.cache.get(parentMeta.recordId, { noUpdateLastUsed: true });
      mref = await this.cache.new(parentRef, { description: `layer ${name}` });
      work = join(tmpDir(this.root), `${mref.id}.reg`);
      await mkdir(work);
      const rec = new TarSplitRecorder(join(work, 'tar-split.gz'));
      const blobHash = createHash('sha256');
      const blob = { n: 0 };
      const mount = await mref.mount();
      let applied;
      try {
        const tar = recording(decompress(hashing(stream, blobHash, blob), 'auto'), rec);
        applied = await applyLayer(tar, mount.target, { compression: 'uncompressed', logger: this.#log });
        await rec.finish();
      } catch (err) {
        await rec.abort();
        throw err;
      } finally {
        await mount.unmount();
      }
      if (desc) {
        const got = `sha256:${blobHash.digest('hex')}`;
        if (got !== desc.digest || blob.n !== desc.size) {
          throw new ErrDigestMismatch(`blob is ${got} (${blob.n} bytes), its descriptor says ${desc.digest} (${desc.size} bytes)`, { details: { digest: desc.digest } });
        }
      }
      const chainID = parentMeta ? `sha256:${createHash('sha256').update(`${parentMeta.chainID} ${applied.diffID}`).digest('hex')}` : applied.diffID;
      const ref = mref;
      return await this.serial(async () => {
        const existing = this.#layers.get(chainID);
        if (existing) return this.addRef(existing);
        const done = await ref.commit();
        mref = undefined;
        try {
          await done.finalize();
          // The finalized record has its own ID: the work dir is renamed after it, so that open()
          // drops this record if the process dies before the layer is in place.
          const dir = join(tmpDir(this.root), `${done.id}.reg`);
          await durableRename(work!, dir);
          work = dir;
          const meta: LayerMeta = {
            chainID, diffID: applied.diffID, depth, size: applied.size, recordId: done.id, tarSplit: true, refs: 1,
            ...(parentMeta ? { parent: parentMeta.chainID } : {}),
            ...(desc ? { descriptor: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size } } : {}),
          };
          await writeMeta(dir, meta);
          await durableRename(dir, layerDir(this.root, chainID));
          work = undefined;
          this.#layers.set(chainID, meta);
          return new Layer(this, meta);
        } finally {
          await done.release();
        }
      });
    } catch (err) {
      throw naming(err, name);
    } finally {
      await mref?.release();
      await parentRef?.release();
      if (work) {
        const id = work.slice(work.lastIndexOf('/') + 1).split('.')[0]!;
        await this.dropRecord(id);
        await rm(work, { recursive: true, force: true });
      }
    }
  }

  private async addRef(meta: LayerMeta): Promise<Layer> {
    meta.refs++;
    try {
      await writeMeta(layerDir(this.root, meta.chainID), meta);
    } catch (err) {
      meta.refs--;
      throw err;
    }
    return new Layer(this, meta);
  }

  /** One more reference to the layer `chainID` (ErrNotFound when it is not registered). */
  get(chainID: string): Promise<Layer> {
    return this.serial(async () => {
      const meta = this.#layers.get(chainID);
      if (!meta) throw new ErrNotFound(`layer ${chainID} is not registered`, { details: { id: chainID } });
      return this.addRef(meta);
    });
  }

  /** Layers registered now (metadata copies). */
  list(): LayerMeta[] {
    return [...this.#layers.values()].map((m) => ({ ...m }));
  }

  /**
   * Gives back one reference; a layer left without references or children is removed, and so,
   * in turn, are its parents that are left without. Returns what was removed, child first.
   */
  release(layer: Layer): Promise<RemovedLayer[]> {
    layer.take();
    return this.serial(async () => {
      const removed: RemovedLayer[] = [];
      let meta = this.#layers.get(layer.chainID);
      if (!meta) return removed;
      meta.refs--;
      while (meta && meta.refs <= 0 && !this.hasChildren(meta.chainID)) {
        await this.remove(meta);
        removed.push({ chainID: meta.chainID, diffID: meta.diffID, size: meta.size });
        meta = meta.parent === undefined ? undefined : this.#layers.get(meta.parent);
      }
      if (removed.length === 0) await writeMeta(layerDir(this.root, meta!.chainID), meta!);
      return removed;
    });
  }

  private hasChildren(chainID: string): boolean {
    for (const m of this.#layers.values()) if (m.parent === chainID) return true;
    return false;
  }

  /** One durable step (the rename into tmp), then the record and files go. */
  private async remove(meta: LayerMeta): Promise<void> {
    const gone = join(tmpDir(this.root), `${meta.recordId}.del`);
    await durableRename(layerDir(this.root, meta.chainID), gone);
    this.#layers.delete(meta.chainID);
    await this.dropRecord(meta.recordId);
    await rm(gone, { recursive: true, force: true });
  }

  /** @internal The original tar of a layer, rebuilt from its tar-split metadata and snapshot. */
  async *tarStreamOf(meta: LayerMeta): AsyncGenerator<Buffer> {
    const ref = await this.cache.get(meta.recordId, { noUpdateLastUsed: true });
    try {
      const mount = await ref.mount({ readonly: true });
      try {
        yield* reassemble(join(layerDir(this.root, meta.chainID), 'tar-split.gz'), mount.target, meta.diffID, meta.chainID);
      } finally {
        await mount.unmount();
      }
    } finally {
      await ref.release();
    }
  }

  /** Waits for work in progress. The cache is the caller's to close. */
  async close(): Promise<void> {
    await this.#lock;
  }
}


