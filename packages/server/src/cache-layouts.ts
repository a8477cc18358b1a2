/**
 * Remote caches of a build over the daemon. A registry (`type=registry`) is reached by the daemon; a
 * local layout directory (`type=local,src=DIR` / `dest=DIR`) stays the client's: the client streams
 * the tagged manifest and the list of the blobs it names that DIR holds into the daemon's private
 * copy, which asks for a blob (CacheWant) only when it first reads it, and the daemon streams
 * back what an export wrote to its copy, which the client stores into DIR through the same
 * LocalStore an in-process export uses (blobs verified, the manifest last, index.json tagged under
 * index.json.lock). Both directions are CacheBlob messages: consecutive chunks of one blob carry its
 * descriptor.
 */
import { mkdir } from 'node:fs/promises';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { checkCacheSpec, LocalStore, MAX_CONFIG_BYTES, MEDIA_OCI_MANIFEST, type BlobBytes, type CacheSpec, type CacheStore } from '@buildcache/remotecache';
import type { Descriptor } from '@buildcache/snapshot';
import { chunked } from './chunks.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** CacheTarget on the wire. */
export interface WireCacheTarget {
  type: string;
  location: string;
  tag: string;
  mode: string;
  compression: string;
  ignoreError: boolean;
}

/** CacheBlob on the wire (int64s as proto-loader gives them). */
export interface WireCacheBlob {
  cache: number;
  digest: string;
  size: string | number;
  mediaType: string;
  manifest: boolean;
  data: Buffer;
}

/** CacheHave on the wire: part of what a local `--cache-to` directory holds (digest → size). */
export interface WireCacheHave {
  cache: number;
  blobs: Record<string, string | number>;
  /** The list is of a `--cache-from` layout. */
  from?: boolean;
}

/** CacheWant on the wire: a `--cache-from` blob the daemon reads. */
export interface WireCacheWant {
  cache: number;
  digest: string;
  size: string | number;
  mediaType: string;
}

/** A cache spec on the wire. */
export function toWireTarget(spec: CacheSpec): WireCacheTarget {
  return { type: spec.type, location: spec.location, tag: spec.tag ?? '', mode: spec.mode, compression: spec.compression ?? '', ignoreError: spec.ignoreError };
}

/** A cache spec from the wire, checked as a flag's is (`checkCacheSpec`); ErrInvalidArgument names what is wrong. */
export function fromWireTarget(t: WireCacheTarget, direction: 'from' | 'to'): CacheSpec {
  return checkCacheSpec(t, direction, `Build: cache${direction === 'to' ? 'To' : 'From'} ${JSON.stringify(t.location)}`);
}

/** Blobs per CacheHave message: about 80 bytes each, so a message stays near 1.3 MiB, under the daemon's 4 MiB. */
const HAVE_PER_MESSAGE = 16_384;

/** What a local `--cache-to` directory (or with `from`, `--cache-from` layout) holds (`blobs`), as CacheHave messages for target `cache` (none when it holds nothing). */
export function* haveMessages(cache: number, blobs: ReadonlyMap<string, number>, from = false): Generator<WireCacheHave> {
  let part: Record<string, string> = {};
  let n = 0;
  for (const [digest, size] of blobs) {
    part[digest] = String(size);
    if (++n < HAVE_PER_MESSAGE) continue;
    yield { cache, blobs: part, ...(from ? { from } : {}) };
    part = {};
    n = 0;
  }
  if (n > 0) yield { cache, blobs: part, ...(from ? { from } : {}) };
}

/** Adds the blobs a CacheHave message lists to `have`; an entry that is no sha256 digest and size is ignored. */
export function addHave(have: Map<string, number>, message: WireCacheHave): void {
  for (const [digest, size] of Object.entries(message.blobs ?? {})) {
    const n = Number(size);
    if (DIGEST.test(digest) && Number.isSafeInteger(n) && n >= 0) have.set(digest, n);
  }
}

const isDescriptor = (d: unknown): d is Descriptor =>
  typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string' && DIGEST.test((d as Descriptor).digest) && Number.isSafeInteger((d as Descriptor).size);

/** The messages of one blob: its bytes in chunks, each carrying the descriptor (an empty blob is one message). */
async function* blobMessages(cache: number, desc: Descriptor, bytes: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, manifest = false): AsyncGenerator<WireCacheBlob> {
  const head = { cache, digest: desc.digest, size: String(desc.size), mediaType: desc.mediaType, manifest };
  let sent = false;
  for await (const data of chunked(bytes)) {
    sent = true;
    yield { ...head, data };
  }
  if (!sent) yield { ...head, data: Buffer.alloc(0) };
}

/**
 * The client's local `--cache-from` layout as BuildInput messages: the list of the blobs its tagged
 * manifest names that the directory holds (also put in `offered`, digest → size), then the manifest.
 * Nothing when there is no readable tagged manifest: the daemon's import then finds none and warns,
 * as an in-process import does. A blob itself goes only when the daemon asks (`wantedBlob`).
 */
export async function* layoutOffer(cache: number, store: LocalStore, offered: Map<string, number>): AsyncGenerator<object> {
  let tagged: { desc: Descriptor; bytes: Buffer };
  try {
    tagged = await store.getTagged();
  } catch {
    return;
  }
  const manifest = tagged.bytes;
  let top: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(manifest.toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null) top = parsed as Record<string, unknown>;
  } catch {
    // sent as it is: the daemon's import says what is wrong with it
  }
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  for (const d of [top.config, ...list(top.layers), ...list(top.manifests)]) {
    if (isDescriptor(d) && !offered.has(d.digest) && (await store.hasBlob(d))) offered.set(d.digest, d.size);
  }
  for (const have of haveMessages(cache, offered, true)) yield { have };
  const mediaType = tagged.desc.mediaType || (typeof top.mediaType === 'string' ? top.mediaType : MEDIA_OCI_MANIFEST);
  for await (const m of blobMessages(cache, { ...tagged.desc, mediaType }, [manifest], true)) yield { cache: m };
}

/** The blob the daemon asked for (`want`) of the layout in `store`, as BuildInput messages; ErrInvalidArgument unless the client offered it. */
export async function* wantedBlob(store: LocalStore, offered: ReadonlyMap<string, number>, want: WireCacheWant): AsyncGenerator<object> {
  const size = Number(want.size);
  if (!DIGEST.test(want.digest) || offered.get(want.digest) !== size) {
    throw new ErrInvalidArgument(`the daemon asked for blob ${JSON.stringify(want.digest)} (${String(want.size)} bytes) of ${store.name}, which the client did not offer`);
  }
  const desc = { digest: want.digest, size, mediaType: want.mediaType };
  for await (const m of blobMessages(want.cache, desc, store.fetch(desc))) yield { cache: m };
}

/**
 * The daemon's copy of a client's local `--cache-from` layout, as the import reads it: the manifest
 * is in `copy`; a blob the client offered counts as present, and is asked for (`want`, resolved once
 * it is stored in `copy`) on its first read.
 */
export class WantedCopy implements CacheStore {
  readonly name: string;
  /** Where the manifest and the blobs that arrived are stored. */
  readonly copy: LocalStore;
  private readonly arriving = new Map<string, Promise<void>>();

  constructor(dir: string, spec: CacheSpec, private readonly offered: ReadonlyMap<string, number>, private readonly want: (desc: Descriptor) => Promise<void>) {
    this.copy = new LocalStore(dir, spec.tag, spec.location);
    this.name = this.copy.name;
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.offered.get(desc.digest) === desc.size || this.copy.hasBlob(desc);
  }

  putBlob(desc: Descriptor, bytes: BlobBytes): Promise<boolean> {
    return this.copy.putBlob(desc, bytes);
  }

  putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    return this.copy.putManifest(bytes, mediaType);
  }

  getManifest(): Promise<Buffer> {
    return this.copy.getManifest();
  }

  async readBlob(desc: Descriptor): Promise<Buffer> {
    await this.arrive(desc);
    return this.copy.readBlob(desc);
  }

  async *fetch(desc: Descriptor): AsyncGenerator<Uint8Array> {
    await this.arrive(desc);
    yield* this.copy.fetch(desc);
  }

  /** Has the client send `desc` unless it is here (once, however many read it). */
  private async arrive(desc: Descriptor): Promise<void> {
    if (this.offered.get(desc.digest) !== desc.size || (await this.copy.hasBlob(desc))) return;
    let arriving = this.arriving.get(desc.digest);
    if (!arriving) {
      arriving = this.want(desc);
      this.arriving.set(desc.digest, arriving);
      void arriving.catch(() => this.arriving.delete(desc.digest));
    }
    await arriving;
  }
}

/**
 * The daemon's copy of a client's local `--cache-to` directory: an export writes to it as to the
 * directory (a blob the client holds counts as stored, so it is neither written nor sent back), and it
 * keeps what was written, in order, to stream back.
 */
export class ExportCopy extends LocalStore {
  /** The blobs written, in the order written (the manifest not among them). */
  private written: Descriptor[] = [];
  private tagged: { desc: Descriptor; bytes: Buffer } | undefined;

  constructor(private readonly copyDir: string, spec: CacheSpec, private readonly have: ReadonlyMap<string, number>) {
    super(copyDir, spec.tag, spec.location);
  }

  override async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.have.get(desc.digest) === desc.size || super.hasBlob(desc);
  }

  override async putBlob(desc: Descriptor, bytes: BlobBytes): Promise<boolean> {
    const put = await super.putBlob(desc, bytes);
    if (put) this.written.push(desc);
    return put;
  }

  override async putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    // Every blob may be the client's: then nothing made the directory yet.
    await mkdir(this.copyDir, { recursive: true });
    const desc = await super.putManifest(bytes, mediaType);
    this.written = this.written.filter((d) => d.digest !== desc.digest);
    this.tagged = { desc, bytes };
    return desc;
  }

  /** What the export wrote, as messages for target `cache`: the blobs, then the manifest (nothing if no manifest was stored). */
  async *messages(cache: number): AsyncGenerator<WireCacheBlob> {
    if (!this.tagged) return;
    for (const d of this.written) yield* blobMessages(cache, d, this.fetch(d));
    yield* blobMessages(cache, this.tagged.desc, [this.tagged.bytes], true);
  }
}

/** One blob as it arrives: which target it belongs to, its descriptor, whether it is the manifest, its bytes (read once). */
export interface ArrivingBlob {
  readonly cache: number;
  readonly desc: Descriptor;
  readonly manifest: boolean;
  readonly bytes: AsyncIterable<Buffer>;
}

/** An async iterator that can look one message ahead. */
export class Lookahead<T> implements AsyncIterator<T> {
  private ahead: IteratorResult<T> | undefined;
  constructor(private readonly it: AsyncIterator<T>) {}

  /** The next message without taking it (undefined at the end). */
  async peek(): Promise<T | undefined> {
    this.ahead ??= await this.it.next();
    return this.ahead.done ? undefined : this.ahead.value;
  }

  async next(): Promise<IteratorResult<T>> {
    const n = this.ahead ?? (await this.it.next());
    this.ahead = undefined;
    return n;
  }

  async return(): Promise<IteratorResult<T>> {
    return (await this.it.return?.()) ?? { done: true, value: undefined };
  }
}

/**
 * Hands each blob of the CacheBlob messages at the head of `messages` (`pick` finds one in a message)
 * to `take`, in order; what `take` leaves unread is skipped. A malformed descriptor is ErrInvalidArgument.
 */
export async function receiveBlobs<M>(messages: Pick<Lookahead<M>, 'peek' | 'next'>, pick: (m: M) => WireCacheBlob | undefined, take: (blob: ArrivingBlob) => Promise<void>): Promise<void> {
  for (let head = await messages.peek(); head !== undefined; head = await messages.peek()) {
    const first = pick(head);
    if (!first) return;
    const size = Number(first.size);
    if (!DIGEST.test(first.digest) || !Number.isSafeInteger(size) || size < 0) {
      throw new ErrInvalidArgument(`cache blob ${JSON.stringify(first.digest)} (${String(first.size)} bytes): not a sha256 digest and size`);
    }
    const same = (m: M | undefined): boolean => {
      const b = m === undefined ? undefined : pick(m);
      return b !== undefined && b.cache === first.cache && b.digest === first.digest && b.manifest === first.manifest;
    };
    // A blob ends with its last byte (an empty one with its one message): no waiting for a message after it, which may come much later.
    let got = -1;
    const more = async (): Promise<boolean> => got < size && same(await messages.peek());
    const bytes = async function* (): AsyncGenerator<Buffer> {
      while (await more()) {
        const data = pick((await messages.next()).value as M)!.data;
        got = Math.max(got, 0) + data.length;
        yield data;
      }
    };
    await take({ cache: first.cache, desc: { mediaType: first.mediaType, digest: first.digest, size }, manifest: first.manifest, bytes: bytes() });
    while (await more()) got = Math.max(got, 0) + pick((await messages.next()).value as M)!.data.length;
  }
}

/** Stores an arriving blob as an export does: a blob verified against its digest, the manifest (at most MAX_CONFIG_BYTES) stored and tagged. */
export async function storeBlob(store: LocalStore, blob: ArrivingBlob): Promise<void> {
  if (!blob.manifest) {
    await store.putBlob(blob.desc, () => blob.bytes);
    return;
  }
  const parts: Buffer[] = [];
  let size = 0;
  for await (const b of blob.bytes) {
    size += b.length;
    if (size > MAX_CONFIG_BYTES) throw new ErrInvalidArgument(`cache manifest ${blob.desc.digest}: more than ${MAX_CONFIG_BYTES} bytes`);
    parts.push(b);
  }
  await store.putManifest(Buffer.concat(parts), blob.desc.mediaType || MEDIA_OCI_MANIFEST);
}
