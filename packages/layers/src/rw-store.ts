/**
 * The read-write layers of a layer store: creation (init layer, container layer), handles, the
 * shared counted mount, `docker diff` and the diff tar, release and cleanup.
 */
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import type { CacheManager } from '@buildcache/cache';
import { ErrAlreadyExists, ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { changesOf, diffTar, type Change } from './diff-stream.js';
import { overReadOnly } from './layer.js';
import { describe, durableMkdir, durableRename, mountDir, tmpDir, writeMountMeta, type LayerMeta, type MountMeta, type RemovedLayer } from './meta.js';
import { MountedLayer, RWLayer, type CreateRWLayerOptions, type RWLayerHost } from './rw-layer.js';

/** What the read-write layers use of their store. */
export interface StoreCore {
  readonly cache: CacheManager;
  readonly root: string;
  readonly holder: string;
  serial<T>(fn: () => Promise<T>): Promise<T>;
  layer(chainID: string): LayerMeta | undefined;
  newToken(): string;
  naming(err: unknown, what: string): unknown;
  dropRecords(ids: readonly string[]): Promise<void>;
  cascade(meta: LayerMeta | undefined): Promise<RemovedLayer[]>;
  withTree<T>(id: string | undefined, fn: (root: string | undefined) => AsyncGenerator<T>): AsyncGenerator<T>;
}

/** Names of read-write layers: Docker's container IDs and names. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** @internal The read-write layers of one store. */
export class RWLayers implements RWLayerHost {
  readonly mounts = new Map<string, MountedLayer>();
  constructor(private readonly core: StoreCore) {}

  /** `LayerStore.createRWLayer`: work dir first, then the init record, the container record, the metadata's rename. */
  async createRWLayer(name: string, parent?: string, options: CreateRWLayerOptions = {}): Promise<RWLayer> {
    if (!NAME.test(name)) throw new ErrInvalidArgument(`read-write layer name ${JSON.stringify(name)} is not valid: use letters, digits, '_', '.', '-' (at most 128, not starting with a symbol)`);
    return this.core.serial(async () => {
      if (this.mounts.has(name)) throw new ErrAlreadyExists(`read-write layer ${name} exists; release it or pick another name`, { details: { id: name } });
      const parentMeta = parent === undefined ? undefined : this.core.layer(parent);
      if (parent !== undefined && !parentMeta) throw new ErrNotFound(`parent layer ${parent} does not exist; register it first`, { details: { id: parent } });
      const token = this.core.newToken();
      const work = join(tmpDir(this.core.root), `${token}.rw`);
      const handles: Array<{ release(): Promise<void> }> = [];
      const created: string[] = [];
      let placed = false;
      await durableMkdir(work);
      try {
        let lower = parentMeta ? await this.core.cache.get(parentMeta.recordId, { noUpdateLastUsed: true }) : undefined;
        if (lower) handles.push(lower);
        let initID: string | undefined;
        if (options.init) {
          const im = await this.core.cache.new(lower, { description: describe(`read-write layer ${name}-init`, token) });
          created.push(im.id);
          const m = await im.mount().catch(async (err: unknown) => {
            await im.release();
            throw err;
          });
          try {
            await options.init(m.target);
          } catch (err) {
            await m.unmount();
            await im.release();
            throw err;
          }
          await m.unmount();
          lower = await im.commit();
          handles.push(lower);
          created.push(lower.id);
          await lower.finalize();
          initID = lower.id;
          await this.core.cache.setHeld(initID, this.core.holder, true);
        }
        const mref = await this.core.cache.new(lower, { description: describe(`read-write layer ${name}`, token), retain: true });
        created.push(mref.id);
        handles.push(mref);
        await this.core.cache.setHeld(mref.id, this.core.holder, true);
        const meta: MountMeta = { name, mountID: mref.id, token, ...(parent ? { parent } : {}), ...(initID ? { initID } : {}) };
        await writeMountMeta(work, meta);
        await durableRename(work, mountDir(this.core.root, name));
        placed = true;
        const ml = new MountedLayer(meta);
        this.mounts.set(name, ml);
        return new RWLayer(this, ml);
      } catch (err) {
        throw this.core.naming(err, `read-write layer ${name}`);
      } finally {
        for (const h of handles.reverse()) await h.release();
        if (!placed) {
          await this.core.dropRecords(created.reverse());
          await rm(work, { recursive: true, force: true });
        }
      }
    });
  }

  /** `LayerStore.getRWLayer`. */
  getRWLayer(name: string): RWLayer {
    const ml = this.mounts.get(name);
    if (!ml) throw new ErrNotFound(`read-write layer ${name} does not exist`, { details: { id: name } });
    return new RWLayer(this, ml);
  }

  /** `LayerStore.listRWLayers`. */
  listRWLayers(): MountMeta[] {
    return [...this.mounts.values()].map((m) => ({ ...m.meta }));
  }

  /** `LayerStore.releaseRWLayer`: the metadata renamed into tmp (the durable step), then the records go. */
  async releaseRWLayer(layer: RWLayer): Promise<RemovedLayer[]> {
    layer.take();
    return this.core.serial(async () => {
      const ml = layer.ml;
      if (ml.handles.size > 0 || this.mounts.get(ml.meta.name) !== ml) return [];
      const gone = join(tmpDir(this.core.root), `${ml.meta.token}.del`);
      await durableRename(mountDir(this.core.root, ml.meta.name), gone);
      this.mounts.delete(ml.meta.name);
      await this.core.dropRecords([ml.meta.mountID, ...(ml.meta.initID ? [ml.meta.initID] : [])]);
      await rm(gone, { recursive: true, force: true });
      return this.core.cascade(ml.meta.parent === undefined ? undefined : this.core.layer(ml.meta.parent));
    });
  }

  /** @internal Mounts the container layer (first mount in the process: a real one). */
  mountRW(ml: MountedLayer): Promise<string> {
    return this.core.serial(async () => {
      if (!ml.held) {
        const ref = await this.core.cache.getMutable(ml.meta.mountID, { noUpdateLastUsed: true });
        try {
          ml.held = { ref, mount: await ref.mount() };
        } catch (err) {
          await ref.release();
          throw err;
        }
      }
      ml.mounts++;
      return ml.held.mount.target;
    });
  }

  /** @internal Gives back one mount; the last one unmounts and lets go of the container layer's handle. */
  unmountRW(ml: MountedLayer): Promise<void> {
    return this.core.serial(async () => {
      if (--ml.mounts > 0 || !ml.held) return;
      const { ref, mount } = ml.held;
      ml.held = undefined;
      try {
        await mount.unmount();
      } finally {
        await ref.release();
      }
    });
  }

  /** @internal `docker diff` of a read-write layer. */
  async changesOf(ml: MountedLayer): Promise<Change[]> {
    let out: Change[] = [];
    for await (const c of this.core.withTree(this.lowerOf(ml), (l) => this.withContainer(ml, async function* (u) { yield await changesOf(l, u); }))) out = c;
    return out;
  }

  /** @internal The layer tar of a read-write layer's changes. */
  async *diffOf(ml: MountedLayer): AsyncGenerator<Buffer> {
    yield* this.core.withTree(this.lowerOf(ml), (l) => this.withContainer(ml, (u) => diffTar(l, u)));
  }

  /** The record under the container layer: the init layer's, else the parent layer's (none: empty). */
  private lowerOf(ml: MountedLayer): string | undefined {
    return ml.meta.initID ?? (ml.meta.parent === undefined ? undefined : this.core.layer(ml.meta.parent)?.recordId);
  }

  /** Runs a generator over the container layer's tree: its mount when mounted, else a read-only one. */
  private async *withContainer<T>(ml: MountedLayer, fn: (root: string) => AsyncGenerator<T>): AsyncGenerator<T> {
    if (ml.held) {
      yield* fn(ml.held.mount.target);
      return;
    }
    yield* overReadOnly(() => this.core.cache.getMutable(ml.meta.mountID, { noUpdateLastUsed: true }), fn);
  }

  /** `LayerStore.cleanup`. */
  cleanup(): Promise<void> {
    return this.core.serial(async () => {
      for (const ml of this.mounts.values()) {
        for (const h of ml.handles) h.dropMounts();
        ml.mounts = 0;
        const held = ml.held;
        ml.held = undefined;
        if (!held) continue;
        try {
          await held.mount.unmount();
        } finally {
          await held.ref.release();
        }
      }
    });
  }

}
