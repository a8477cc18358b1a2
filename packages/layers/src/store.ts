/**
 * The layer store: Docker's read-only layers as records of one cache. A layer is registered from a
 * tar stream (applied by the safe applier while its diffID and tar-split metadata are computed in
 * the same pass), found by chain ID, reference counted, and exported again byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { chainID as chainOf, type CacheManager, type ImmutableRef, type MutableRef } from '@buildcache/cache';
import { ErrDigestMismatch, ErrInvalidArgument, ErrMaxDepthExceeded, ErrNotFound } from '@buildcache/errdefs';
import { applyLayer, decompress } from '@buildcache/snapshot';
import { PoolSha256 } from '@buildcache/sys';
import { diffTar } from './diff-stream.js';
import { describe, durableMkdir, durableRename, layerDir, layersDir, mountsDir, readAllMeta, tmpDir, writeMeta, type LayerMeta, type MountMeta, type RemovedLayer } from './meta.js';
import { MountedLayer, type CreateRWLayerOptions, type RWLayer } from './rw-layer.js';
import { RWLayers } from './rw-store.js';

import { reassemble } from './reassemble.js';
import { TarSplitRecorder } from './tar-split.js';
import { hashing, Layer, naming, overReadOnly, recording, verified, type LayerHost } from './layer.js';

export { Layer };
export type { RemovedLayer };

/** The holder name the store marks its cache records with (`CacheManager.setHeld`). */
export const HOLDER = 'layers';
const newToken = (): string => randomBytes(8).toString('hex');

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


/** Docker's layer store over one cache. */
export class LayerStore implements LayerHost {
  #lock: Promise<unknown> = Promise.resolve();
  readonly #layers = new Map<string, LayerMeta>();
  readonly #rw: RWLayers;
  readonly #log: Logger;

  private constructor(
    private readonly cache: CacheManager,
    private readonly root: string,
    private readonly maxDepth: number,
    logger: Logger,
  ) {
    this.#log = logger;
    this.#rw = new RWLayers({
      cache, root, holder: HOLDER, newToken, naming,
      serial: (fn) => this.serial(fn),
      layer: (chainID) => this.#layers.get(chainID),
      dropRecords: (ids) => this.dropRecords(ids),
      cascade: (meta) => this.cascade(meta),
      withTree: (id, fn) => this.withTree(id, fn),
    });
  }

  /**
   * Opens the store. What a crash interrupted is undone or finished first: a registration or a
   * read-write layer creation that never completed leaves no record, a deletion is completed; what
   * writers killed while rewriting a `layer.json` or `mount.json` left beside it is removed.
   */
  static async open(options: LayerStoreOptions): Promise<LayerStore> {
    const store = new LayerStore(options.cache, options.root, Math.min(options.maxDepth ?? MAX_DEPTH, MAX_DEPTH), options.logger ?? pino({ level: 'silent' }));
    for (const dir of [layersDir(options.root), mountsDir(options.root), tmpDir(options.root)]) await mkdir(dir, { recursive: true });
    for (const name of await readdir(tmpDir(options.root))) await store.recover(name);
    for (const meta of await readAllMeta<LayerMeta>(layersDir(options.root), 'layer.json')) store.#layers.set(meta.chainID, meta);
    for (const meta of await readAllMeta<MountMeta>(mountsDir(options.root), 'mount.json')) store.#rw.mounts.set(meta.name, new MountedLayer(meta));
    return store;
  }

  /** Drops every record of the interrupted work `tmp/<token>.<kind>` (found by the token in their descriptions), then the entry. */
  private async recover(entry: string): Promise<void> {
    const token = entry.split('.')[0]!;
    const dir = join(tmpDir(this.root), entry);
    const ids = new Set<string>();
    for await (const u of this.cache.diskUsage({ filters: [`description~=${token}`] })) ids.add(u.id);
    const json = async <T>(file: string): Promise<T | undefined> => readFile(join(dir, file), 'utf8').then((t) => JSON.parse(t) as T, () => undefined);
    const layer = await json<LayerMeta>('layer.json');
    const mount = await json<MountMeta>('mount.json');
    if (layer?.adopted) await this.letGo(layer.recordId);
    else if (layer) ids.add(layer.recordId);
    if (mount) for (const id of [mount.mountID, mount.initID]) if (id) ids.add(id);
    await this.dropRecords([...ids]);
    await rm(dir, { recursive: true, force: true });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /** Stops holding a record (gone already: nothing to do). */
  private async letGo(id: string): Promise<void> {
    await this.cache.setHeld(id, HOLDER, false).catch((err: unknown) => {
      if (!(err instanceof ErrNotFound)) throw err;
    });
  }

  /** Deletes cache records the store no longer wants (absent: nothing to do). */
  private async dropRecords(ids: readonly string[]): Promise<void> {
    for (const id of ids) await this.letGo(id);
    // one policy: its rounds delete a child, then the parent that frees
    if (ids.length) await this.cache.prune([{ all: true, filters: [`id~=^(${ids.join('|')})$`] }]);
  }

  /**
   * Registers the layer `stream` holds on top of `parent` (a chain ID): applies it, computes its
   * diffID and records its tar-split metadata in one pass. An existing chain ID gets one more
   * reference instead (the stream is still read and verified). Bad input changes nothing.
   */
  async register(stream: LayerSource, parent?: string, options: RegisterOptions = {}): Promise<Layer> {
    const desc = options.descriptor;
    const name = desc?.digest ?? `on ${parent ?? 'no parent'}`;
    const { parentMeta, depth } = this.placement(name, parent);
    if (desc && !/^sha256:[0-9a-f]{64}$/.test(desc.digest)) throw new ErrInvalidArgument(`descriptor digest ${JSON.stringify(desc.digest)} is not a sha256 digest`);
    const token = newToken();
    const work = join(tmpDir(this.root), `${token}.reg`);
    let parentRef: ImmutableRef | undefined;
    let mref: MutableRef | undefined;
    const created: string[] = [];
    let placed = false;
    await durableMkdir(work);
    try {
      if (parentMeta) parentRef = await this.cache.get(parentMeta.recordId, { noUpdateLastUsed: true });
      mref = await this.cache.new(parentRef, { description: describe(`layer ${name}`, token) });
      created.push(mref.id);
      const rec = new TarSplitRecorder(join(work, 'tar-split.gz'));
      // the blob's digest is needed only to check it against a descriptor
      const blobHash = new PoolSha256();
      const blob = { n: 0 };
      const mount = await mref.mount();
      let applied;
      try {
        const tar = recording(decompress(desc ? hashing(stream, blobHash, blob) : stream, 'auto'), rec);
        applied = await applyLayer(tar, mount.target, { compression: 'uncompressed', logger: this.#log });
        await rec.finish();
      } catch (err) {
        await rec.abort();
        throw err;
      } finally {
        await mount.unmount();
      }
      if (desc) {
        const got = `sha256:${await blobHash.digest()}`;
        if (got !== desc.digest || blob.n !== desc.size) {
          throw new ErrDigestMismatch(`blob is ${got} (${blob.n} bytes), its descriptor says ${desc.digest} (${desc.size} bytes)`, { details: { digest: desc.digest } });
        }
      }
      const ref = mref;
      const diffID = applied.diffID;
      return await this.serial(async () => {
        const chainID = chainOf(parentMeta?.chainID, diffID);
        const existing = this.#layers.get(chainID);
        if (existing) return this.addRef(existing);
        const done = await ref.commit();
        mref = undefined;
        created.push(done.id);
        try {
          await done.finalize();
          const meta: LayerMeta = {
            chainID, diffID, depth, size: applied.size, recordId: done.id, tarSplit: true, refs: 1, token,
            ...(parentMeta ? { parent: parentMeta.chainID } : {}),
            ...(desc ? { descriptor: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size } } : {}),
          };
          return await this.place(work, meta, done.id);
        } finally {
          await done.release();
        }
      }).then((layer) => {
        placed = true;
        return layer;
      });
    } catch (err) {
      throw naming(err, name);
    } finally {
      await mref?.release();
      await parentRef?.release();
      if (!placed) {
        await this.dropRecords(created.reverse());
        await rm(work, { recursive: true, force: true });
      }
    }
  }

  /**
   * Registers the layer that the immutable record `ref` holds over the layer `parent` (its cache
   * parent must be that layer's record): e.g. a build step's result. No tar-split data is kept: the
   * diffID is the sha256 of the deterministic differ's tar, which `tarStream()` gives again. The store
   * holds the record while the layer exists; removing the layer lets go of it (the caller's record stays).
   */
  async registerRecord(ref: ImmutableRef, parent?: string): Promise<Layer> {
    const name = `record ${ref.id}`;
    const { parentMeta, depth } = this.placement(name, parent);
    const cacheParent = ref.parent();
    await cacheParent?.release();
    if (cacheParent?.id !== parentMeta?.recordId) {
      throw new ErrInvalidArgument(`record ${ref.id} is not on ${parent === undefined ? 'no parent' : `layer ${parent}'s record ${parentMeta!.recordId}`} (its parent record is ${cacheParent?.id ?? 'none'}); register it over the layer of its parent record`, { details: { id: ref.id } });
    }
    await ref.finalize();
    const hash = new PoolSha256();
    const counted = { n: 0 };
    for await (const c of hashing(this.diffOfRecords(parentMeta?.recordId, ref.id), hash, counted)) void c;
    const size = counted.n;
    const diffID = `sha256:${await hash.digest()}`;
    const token = newToken();
    const work = join(tmpDir(this.root), `${token}.reg`);
    return this.serial(async () => {
      const chainID = chainOf(parentMeta?.chainID, diffID);
      const existing = this.#layers.get(chainID);
      if (existing) return this.addRef(existing);
      await durableMkdir(work);
      const meta: LayerMeta = {
        chainID, diffID, depth, size, recordId: ref.id, tarSplit: false, refs: 1, token, adopted: true,
        ...(parentMeta ? { parent: parentMeta.chainID } : {}),
      };
      await writeMeta(work, meta); // open lets go of the record if the layer is not placed
      try {
        return await this.place(work, meta, ref.id);
      } catch (err) {
        await this.letGo(ref.id);
        await rm(work, { recursive: true, force: true });
        throw err;
      }
    });
  }

  /** The parent's metadata and the new layer's depth; fails when the parent is unknown or the chain too deep. */
  private placement(name: string, parent: string | undefined): { parentMeta?: LayerMeta; depth: number } {
    const parentMeta = parent === undefined ? undefined : this.#layers.get(parent);
    if (parent !== undefined && !parentMeta) throw new ErrNotFound(`parent layer ${parent} does not exist; register it first`, { details: { id: parent } });
    const depth = (parentMeta?.depth ?? 0) + 1;
    if (depth > this.maxDepth) {
      throw new ErrMaxDepthExceeded(`layer ${name} would be layer ${depth} of its chain; at most ${this.maxDepth} are allowed`, { details: { id: parent, depth } });
    }
    return parentMeta ? { parentMeta, depth } : { depth };
  }

  /** Holds the record, writes the metadata and renames the work dir into place (the durable step). */
  private async place(work: string, meta: LayerMeta, recordId: string): Promise<Layer> {
    await this.cache.setHeld(recordId, HOLDER, true);
    await writeMeta(work, meta);
    await durableRename(work, layerDir(this.root, meta.chainID));
    this.#layers.set(meta.chainID, meta);
    return new Layer(this, meta);
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

  /**
   * A handle on a reference taken earlier and still counted in the layer's metadata (e.g. by the
   * process that wrote an image record), without taking another; ErrNotFound when it is not registered.
   */
  adopt(chainID: string): Layer {
    const meta = this.#layers.get(chainID);
    if (!meta) throw new ErrNotFound(`layer ${chainID} is not registered`, { details: { id: chainID } });
    return new Layer(this, meta);
  }

  /** Layers registered now (metadata copies). */
  list(): LayerMeta[] {
    return [...this.#layers.values()].map((m) => ({ ...m }));
  }

  /**
   * Gives back one reference; a layer left without references or children is removed, and so,
   * in turn, are its parents that are left without. Returns what was removed, child first.
   */
  async release(layer: Layer): Promise<RemovedLayer[]> {
    layer.take();
    return this.serial(async () => {
      const meta = this.#layers.get(layer.chainID);
      if (!meta) return [];
      meta.refs--;
      const removed = await this.cascade(meta);
      if (removed.length === 0) await writeMeta(layerDir(this.root, meta.chainID), meta);
      return removed;
    });
  }

  /** Removes `meta` if nothing holds it, then its parents in turn; returns what went, child first. */
  private async cascade(start: LayerMeta | undefined): Promise<RemovedLayer[]> {
    const removed: RemovedLayer[] = [];
    for (let meta = start; meta && meta.refs <= 0 && !this.hasChildren(meta.chainID); meta = meta.parent === undefined ? undefined : this.#layers.get(meta.parent)) {
      await this.remove(meta);
      removed.push({ chainID: meta.chainID, diffID: meta.diffID, size: meta.size });
    }
    return removed;
  }

  /** Whether a layer or a read-write layer is on top of `chainID`. */
  private hasChildren(chainID: string): boolean {
    for (const m of this.#layers.values()) if (m.parent === chainID) return true;
    for (const m of this.#rw.mounts.values()) if (m.meta.parent === chainID) return true;
    return false;
  }

  /** One durable step (the rename into tmp), then the record and files go. */
  private async remove(meta: LayerMeta): Promise<void> {
    const gone = join(tmpDir(this.root), `${meta.token ?? newToken()}.del`);
    await durableRename(layerDir(this.root, meta.chainID), gone);
    this.#layers.delete(meta.chainID);
    if (meta.adopted) await this.letGo(meta.recordId);
    else await this.dropRecords([meta.recordId]);
    await rm(gone, { recursive: true, force: true });
  }

  /** @internal The original tar of a layer: from its tar-split metadata, or the differ without one. */
  async *tarStreamOf(meta: LayerMeta): AsyncGenerator<Buffer> {
    const tar = meta.tarSplit
      ? this.withTree(meta.recordId, (root) => reassemble(join(layerDir(this.root, meta.chainID), 'tar-split.gz'), root!, meta.chainID))
      : this.diffOfRecords(meta.parent === undefined ? undefined : this.#layers.get(meta.parent)?.recordId, meta.recordId);
    yield* verified(tar, meta);
  }

  /** The differ's tar from the tree of record `lower` (none: empty) to that of record `upper`. */
  private async *diffOfRecords(lower: string | undefined, upper: string): AsyncGenerator<Buffer> {
    yield* this.withTree(lower, (l) => this.withTree(upper, (u) => diffTar(l, u!)));
  }

  /** Runs a generator over record `id`'s tree mounted read-only (none: undefined). */
  private async *withTree<T>(id: string | undefined, fn: (root: string | undefined) => AsyncGenerator<T>): AsyncGenerator<T> {
    if (id === undefined) {
      yield* fn(undefined);
      return;
    }
    yield* overReadOnly(() => this.cache.get(id, { noUpdateLastUsed: true }), fn);
  }

  /**
   * Creates the read-write layer `name` over the layer `parent` (none: empty): an `-init` layer
   * written by `options.init` (e.g. `setupInitLayer`), then the container layer. The parent stays
   * while the read-write layer exists. ErrAlreadyExists when `name` is taken.
   */
  createRWLayer(name: string, parent?: string, options: CreateRWLayerOptions = {}): Promise<RWLayer> {
    return this.#rw.createRWLayer(name, parent, options);
  }

  /** A new handle on the read-write layer `name` (ErrNotFound when there is none). */
  getRWLayer(name: string): RWLayer {
    return this.#rw.getRWLayer(name);
  }

  /** Read-write layers that exist now (metadata copies). */
  listRWLayers(): MountMeta[] {
    return this.#rw.listRWLayers();
  }

  /**
   * Gives back one handle (unmount its mounts first). With the last handle of this process the
   * read-write layer is deleted — container and init layers — and its parent released in turn;
   * returns the registered layers that removed, child first.
   */
  releaseRWLayer(layer: RWLayer): Promise<RemovedLayer[]> {
    return this.#rw.releaseRWLayer(layer);
  }

  /** Unmounts every read-write layer this process mounted and lets go of their handles (they stay valid). */
  cleanup(): Promise<void> {
    return this.#rw.cleanup();
  }

  /** Waits for work in progress and unmounts what this process mounted (`cleanup`). The cache is the caller's to close. */
  async close(): Promise<void> {
    await this.cleanup();
  }
}
