/**
 * Ref handles on cache records. An `ImmutableRef` is a read-only, shareable layer; a `MutableRef` is
 * a writable layer that `commit()` turns into an immutable one. Every handle must be released once;
 * a released handle throws `ErrReleased`.
 */
import { ErrReleased } from '@buildcache/errdefs';
import type { ActiveMount, Descriptor, Mount } from '@buildcache/snapshot';
import type { DescHandlers } from './context.js';
import type { CacheRecord, Handle } from './records.js';
import { recordSize, resetSize } from './size.js';
import { ensureBlob, extractRecord } from './lazy.js';
import { setBlob, getRemote, getRemotes, type RemoteOptions, type RemotesOptions } from './blobs.js';
import { commitMutableLocked, releaseMutableLocked } from './lifecycle.js';

/** Options of `mount()` / `mounts()`. */
export interface MountOptions {
  /** Mount read-only (default false for mutable refs; immutable refs are always read-only). */
  readonly readonly?: boolean;
}

/** What is known of an immutable record's content identity. */
export interface RefInfo {
  readonly id: string;
  readonly snapshotID: string;
  readonly chainID?: string;
  readonly blobChainID?: string;
  readonly diffID?: string;
  readonly blob?: string;
  readonly mediaType?: string;
  /** False for a lazy record whose snapshot is not extracted yet. */
  readonly extracted: boolean;
}

abstract class RefBase implements Handle {
  #released = false;
  constructor(
    protected readonly rec: CacheRecord,
    readonly triggerLastUsed: boolean,
    readonly descHandlers: DescHandlers,
  ) {
    rec.refs.add(this);
  }

  /** The record ID. */
  get id(): string {
    return this.rec.id;
  }

  /** Whether `release()` was called (or the handle was consumed by `commit()`). */
  get released(): boolean {
    return this.#released;
  }

  protected check(): CacheRecord {
    if (this.#released) {
      throw new ErrReleased(`ref ${this.rec.id} was already released; take a new ref with get() or clone()`, {
        details: { id: this.rec.id },
      });
    }
    return this.rec;
  }

  protected markReleased(): void {
    this.check();
    this.#released = true;
  }

  /** Mounts this ref on a temp dir (or its own dir for a plain writable bind); call `unmount()` after. */
  async mount(options: MountOptions = {}): Promise<ActiveMount> {
    const mounts = await this.mounts(options);
    return this.rec.cm.backend.mounter.mount(mounts);
  }

  abstract mounts(options?: MountOptions): Promise<Mount[]>;
}

/** A read-only handle on an immutable cache record. */
export class ImmutableRef extends RefBase {
  /** A new handle on the same record (released separately; does not stamp last-used). */
  clone(): ImmutableRef {
    return new ImmutableRef(this.check(), false, this.descHandlers);
  }

  /** Releases this handle; stamps last-used time; the record stays until pruned (see docs). */
  async release(): Promise<void> {
    this.check();
    await this.rec.cm.mu(() => this.releaseLocked());
    this.rec.cm.changed();
  }

  /** @internal Release with the manager lock held. */
  async releaseLocked(): Promise<void> {
    this.markReleased();
    const rec = this.rec;
    await rec.lock(async () => {
      rec.refs.delete(this);
      if (this.triggerLastUsed && !rec.isDead()) rec.updateLastUsed();
      if (rec.refs.size > 0) return;
      const mutable = rec.equalMutable;
      if (mutable?.linkHandle) await releaseMutableLocked(mutable, mutable.linkHandle);
      else await rec.dropView();
    });
  }

  /** Bytes used: own snapshot layer (unless lazy) plus blob; computed once and kept. */
  size(options: { signal?: AbortSignal } = {}): Promise<number> {
    return recordSize(this.check(), options.signal);
  }

  info(): RefInfo {
    const md = this.check().md;
    return {
      id: md.id,
      snapshotID: md.snapshotID,
      extracted: !md.blobOnly,
      ...(md.chainID ? { chainID: md.chainID } : {}),
      ...(md.blobChainID ? { blobChainID: md.blobChainID } : {}),
      ...(md.diffID ? { diffID: md.diffID } : {}),
      ...(md.blob ? { blob: md.blob } : {}),
      ...(md.mediaType ? { mediaType: md.mediaType } : {}),
    };
  }

  /** A new handle on the parent record, or undefined for a base layer; release it when done. */
  parent(): ImmutableRef | undefined {
    return this.check().parent?.clone();
  }

  /** New handles on every layer, base first, ending with a clone of this one; release them all. */
  layerChain(): ImmutableRef[] {
    this.check();
    const chain: ImmutableRef[] = [];
    for (let r: CacheRecord | undefined = this.rec; r; r = r.parent?.record) {
      chain.unshift(new ImmutableRef(r, false, this.descHandlers));
    }
    return chain;
  }

  /** Read-only mounts of this layer (extracting a lazy record first). */
  async mounts(options: MountOptions = {}): Promise<Mount[]> {
    const rec = this.check();
    await this.extract();
    const mutable = rec.equalMutable;
    if (mutable && options.readonly === true) {
      const mounts = await rec.cm.backend.snapshotter.mounts(mutable.md.snapshotID);
      return rec.cm.backend.mounter.readonly(mounts);
    }
    await rec.finalize();
    return rec.cm.backend.mounter.readonly(await rec.viewOf());
  }

  /** Commits the record's snapshot now if it still shares the mutable one's. */
  finalize(): Promise<void> {
    return this.check().finalize();
  }

  /** Makes the snapshot of a lazy record exist locally (fetching and applying its blob). */
  extract(options: { signal?: AbortSignal } = {}): Promise<void> {
    return extractRecord(this.check(), this.descHandlers, options.signal);
  }

  /** Makes a lazy record's blob local (fetched through its descriptor handler, digest verified), without extracting it. */
  fetchBlob(options: { signal?: AbortSignal } = {}): Promise<void> {
    return ensureBlob(this.check(), this.descHandlers, options.signal);
  }

  /** Records `desc` as this layer's blob (its annotation `containerd.io/uncompressed` gives the diffID). */
  setBlob(desc: Descriptor): Promise<void> {
    return setBlob(this.check(), desc);
  }

  /** Descriptors of the layer blobs of the whole chain, base first, creating missing ones (see RemoteOptions). */
  getRemote(options: RemoteOptions = {}): Promise<Descriptor[]> {
    return getRemote(this.check(), this.descHandlers, options);
  }

  /** `getRemote()`'s chain, then with `all` every other chain of stored blobs and variants (see RemotesOptions). */
  getRemotes(options: RemotesOptions = {}): Promise<Descriptor[][]> {
    return getRemotes(this.check(), this.descHandlers, options);
  }

  /** A value another package keeps with this record (e.g. content checksums), or undefined; one metadata read. */
  getExternal(key: string): Promise<Uint8Array | undefined> {
    return this.check().md.item.getExternal(key);
  }

  /**
   * Stores `bytes` as value `key` with this record, durably; it is deleted with the record. The
   * record's data never changes, so what is derived from it stays true.
   */
  setExternal(key: string, bytes: Uint8Array): Promise<void> {
    return this.check().md.item.setExternal(key, bytes);
  }

  /** @internal */
  get record(): CacheRecord {
    return this.rec;
  }
}

/** A writable handle on a mutable cache record. */
export class MutableRef extends RefBase {
  /** Writable mounts (read-only with `{ readonly: true }`). */
  async mounts(options: MountOptions = {}): Promise<Mount[]> {
    const rec = this.check();
    const mounts = await rec.cm.backend.snapshotter.mounts(rec.md.snapshotID);
    if (options.readonly) return rec.cm.backend.mounter.readonly(mounts);
    await rec.lock(() => resetSize(rec));
    return mounts;
  }

  /**
   * Turns this mutable layer into an immutable record that shares its data; this handle is
   * consumed (do not release it) and the returned ref must be released instead.
   */
  async commit(): Promise<ImmutableRef> {
    const rec = this.check();
    return rec.cm.mu(() =>
      rec.lock(async () => {
        const imm = await commitMutableLocked(rec, this);
        this.markReleased();
        return new ImmutableRef(imm, true, this.descHandlers);
      }),
    );
  }

  /** Releases the handle; a mutable record without retain policy is removed with its data. */
  async release(): Promise<void> {
    const rec = this.check();
    this.markReleased();
    await rec.cm.mu(() =>
      rec.lock(() => releaseMutableLocked(rec, this)),
    );
    rec.cm.changed();
  }
}
