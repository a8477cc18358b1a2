/**
 * Read-write layers (Docker's mounted layers): a container layer — a retained mutable cache record —
 * over an optional `-init` layer over a registered layer. Handles are counted; so are mounts, which
 * share one real mount of the container layer per process.
 */
import type { MutableRef } from '@buildcache/cache';
import { ErrFailedPrecondition, ErrReleased } from '@buildcache/errdefs';
import type { ActiveMount } from '@buildcache/snapshot';
import type { Change } from './diff-stream.js';
import type { MountMeta } from './meta.js';

/** Options of `createRWLayer`. */
export interface CreateRWLayerOptions {
  /** Writes the `-init` layer between the parent and the container layer (e.g. `setupInitLayer`). */
  readonly init?: (root: string) => Promise<void>;
}

/** What a read-write layer needs of its store. */
export interface RWLayerHost {
  mountRW(ml: MountedLayer): Promise<string>;
  unmountRW(ml: MountedLayer): Promise<void>;
  changesOf(ml: MountedLayer): Promise<Change[]>;
  diffOf(ml: MountedLayer): AsyncGenerator<Buffer>;
}

/** @internal One read-write layer in this process: its metadata, its handles, and its shared mount. */
export class MountedLayer {
  readonly handles = new Set<RWLayer>();
  /** The container layer's handle and mount while mounted. */
  held?: { readonly ref: MutableRef; readonly mount: ActiveMount };
  /** Mounts taken through all handles. */
  mounts = 0;
  constructor(readonly meta: Readonly<MountMeta>) {}
}

/** One reference to a read-write layer; give it back with `store.releaseRWLayer(layer)`. */
export class RWLayer {
  #released = false;
  #mounts = 0;
  constructor(
    private readonly host: RWLayerHost,
    /** @internal */
    readonly ml: MountedLayer,
  ) {
    ml.handles.add(this);
  }
  /** The name it was created with (Docker's container ID). */
  get name(): string { return this.ml.meta.name; }
  /** The chain ID of the layer under it (none for a layer on nothing). */
  get parent(): string | undefined { return this.ml.meta.parent; }
  /** Mounts made through this handle and not unmounted yet. */
  get mounted(): number { return this.#mounts; }

  /** Mounts the container layer writable (shared, counted); returns its path. */
  async mount(): Promise<string> {
    this.check();
    const path = await this.host.mountRW(this.ml);
    this.#mounts++;
    return path;
  }

  /** Gives back one mount of this handle; the last one in the process unmounts. */
  async unmount(): Promise<void> {
    this.check();
    if (this.#mounts === 0) throw new ErrFailedPrecondition(`read-write layer ${this.name} is not mounted through this handle`, { details: { id: this.name } });
    this.#mounts--;
    await this.host.unmountRW(this.ml);
  }

  /** What the container layer changed over the layers under it (like `docker diff`). */
  changes(): Promise<Change[]> {
    this.check();
    return this.host.changesOf(this.ml);
  }

  /** The layer tar of those changes (what `docker commit` registers), from the deterministic differ. */
  tarStream(): AsyncGenerator<Buffer> {
    this.check();
    return this.host.diffOf(this.ml);
  }

  /** @internal Marks this handle used up (by `store.releaseRWLayer`). */
  take(): void {
    this.check();
    if (this.#mounts > 0) {
      throw new ErrFailedPrecondition(`read-write layer ${this.name} is still mounted ${this.#mounts} time(s) through this handle; unmount it first`, { details: { id: this.name } });
    }
    this.#released = true;
    this.ml.handles.delete(this);
  }

  /** @internal Forgets this handle's mounts (the store unmounted them: `cleanup`). */
  dropMounts(): void {
    this.#mounts = 0;
  }

  private check(): void {
    if (this.#released) throw new ErrReleased(`read-write layer ${this.name} was already released`, { details: { id: this.name } });
  }
}
