/**
 * A registered layer's handle, and the helpers of registration and export: the passes that hash
 * and record a stream, a read-only mount around a generator, a digest check at the end of an export, error naming.
 */
import { PoolSha256 } from '@buildcache/sys';
import { BuildcacheError, ErrCorruptLayer, ErrReleased } from '@buildcache/errdefs';
import type { LayerMeta } from './meta.js';
import type { TarSplitRecorder } from './tar-split.js';

/** What a layer handle needs of its store. */
export interface LayerHost {
  tarStreamOf(meta: LayerMeta): AsyncGenerator<Buffer>;
}

/** One reference to a registered layer; give it back with `store.release(layer)`. */
export class Layer {
  #released = false;
  /** @internal Handles come from the store (`register`, `get`, `adopt`). */
  constructor(
    private readonly store: LayerHost,
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

/** A cache handle that mounts (immutable or mutable ref). */
interface Mountable {
  mount(options: { readonly: true }): Promise<{ readonly target: string; unmount(): Promise<void> }>;
  release(): Promise<void>;
}

/** Runs a generator over the tree of the handle `take` gives, mounted read-only; then unmounts and releases it. */
export async function* overReadOnly<T>(take: () => Promise<Mountable>, fn: (root: string) => AsyncGenerator<T>): AsyncGenerator<T> {
  const ref = await take();
  try {
    const mount = await ref.mount({ readonly: true });
    try {
      yield* fn(mount.target);
    } finally {
      await mount.unmount();
    }
  } finally {
    await ref.release();
  }
}

/** Passes a stream through, hashing and counting it. */
export async function* hashing(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, hash: PoolSha256, count: { n: number }): AsyncGenerator<Uint8Array> {
  for await (const c of src) {
    await hash.update(c);
    count.n += c.length;
    yield c;
  }
}

/** Passes a tar stream through, recording its tar-split metadata. */
export async function* recording(src: AsyncIterable<Buffer>, rec: TarSplitRecorder): AsyncGenerator<Buffer> {
  for await (const c of src) {
    await rec.write(c);
    yield c;
  }
}

/** The same typed error with the layer named in its message and details. */
export function naming(err: unknown, layer: string): unknown {
  if (!(err instanceof BuildcacheError)) return err;
  const Ctor = err.constructor as new (m: string, o: { cause: unknown; details: object }) => BuildcacheError;
  return new Ctor(`layer ${layer}: ${err.message}`, { cause: err, details: { ...err.details, layer } });
}

/** Passes `src` through, failing at the end when it does not hash to the layer's diffID. */
export async function* verified(src: AsyncIterable<Buffer>, meta: LayerMeta): AsyncGenerator<Buffer> {
  const hash = new PoolSha256();
  for await (const c of src) {
    await hash.update(c);
    yield c;
  }
  const got = `sha256:${await hash.digest()}`;
  if (got !== meta.diffID) {
    throw new ErrCorruptLayer(`layer ${meta.chainID}: the tar rebuilt from its files hashes to ${got}, not its diffID ${meta.diffID}; its files changed since registration`, { details: { id: meta.chainID, digest: got } });
  }
}
