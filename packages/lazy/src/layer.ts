/**
 * One remote layer as the layer manager holds it: its local sparse copy, its eStargz reader (none
 * for a layer that is not eStargz), its prefetch and background fetch, and its use count.
 */
import type { LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import type { Descriptor } from '@buildcache/snapshot';
import type { EstargzReader, EstargzStat } from '@buildcache/estargz';
import type { SparseBlob } from './sparse-blob.js';
import { indexTar, readTarFile, statTar, type TarIndex } from './plain-tar.js';

/** What the manager knows of one layer (`LayerManager.state`). */
export interface LayerState {
  readonly digest: string;
  readonly size: number;
  /** Whether the layer is eStargz (read lazily) or fetched whole. */
  readonly estargz: boolean;
  /** TOC digest of an eStargz layer. */
  readonly tocDigest?: string;
  readonly resolved: boolean;
  /** Prefetch (up to the prefetch landmark) finished. */
  readonly prefetched: boolean;
  /** Every byte is local and the blob digest verified. */
  readonly complete: boolean;
  readonly bytesFetched: number;
  readonly requests: number;
  /** Handles currently using the layer. */
  readonly uses: number;
}

/** A resolved remote layer. */
export class LazyLayer {
  /** @internal use count, kept by the manager */
  uses = 0;
  /** @internal grace timer of an unused layer */
  forgetTimer: NodeJS.Timeout | undefined;
  private prefetching: Promise<void> | undefined;
  private fetchingAll: Promise<void> | undefined;
  private prefetchDone = false;
  private completeDone = false;
  private tarIndex: Promise<TarIndex> | undefined;
  private verifying: Promise<void> | undefined;
  /** Aborted when the layer is forgotten: stops background work. */
  readonly stop = new AbortController();

  constructor(
    readonly desc: Descriptor,
    readonly blob: SparseBlob,
    /** The eStargz reader over `blob`; undefined for a layer that is not eStargz. */
    readonly reader: EstargzReader | undefined,
    private readonly logger: Logger,
  ) {}

  get digest(): string {
    return this.desc.digest;
  }

  /** A snapshot of the layer's state. */
  state(): LayerState {
    return {
      digest: this.digest,
      size: this.blob.size,
      estargz: this.reader !== undefined,
      ...(this.reader ? { tocDigest: this.reader.tocDigest } : {}),
      resolved: true,
      prefetched: this.prefetchDone,
      complete: this.completeDone,
      bytesFetched: this.blob.stats.bytesFetched,
      requests: this.blob.stats.requests,
      uses: this.uses,
    };
  }

  /** Metadata of `path` in this layer (ErrNotFound without it). */
  async stat(path: string): Promise<EstargzStat> {
    if (this.reader) return this.reader.stat(path);
    return statTar(await this.plainIndex(), path, this.digest);
  }

  /** Whether this layer has `path`. */
  async has(path: string): Promise<boolean> {
    if (this.reader) return this.reader.lookup(path) !== undefined;
    return this.stat(path).then(() => true, () => false);
  }

  /** Names in directory `path` (ErrNotFound unless it is a directory of this layer). */
  async readdir(path: string): Promise<string[]> {
    if (this.reader) return this.reader.readdir(path);
    const index = await this.plainIndex();
    const st = statTar(index, path, this.digest);
    const names = st.type === 'dir' ? index.children.get(st.path) : undefined;
    return [...(names ?? [])].sort();
  }

  /** The regular file at `path`, chunk by chunk: only its chunks are fetched for eStargz; the whole blob first otherwise. */
  async *readFileChunks(path: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    if (this.reader) {
      yield* this.reader.readFileChunks(path, options);
      return;
    }
    const index = await this.plainIndex();
    yield* readTarFile(this.blob.path, index, path, this.digest);
  }

  /** The whole regular file at `path`. */
  async readFile(path: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.readFileChunks(path, options)) parts.push(c);
    return Buffer.concat(parts);
  }

  /** A layer that is not eStargz: fetch all of it (foreground), verify, index its tar once. */
  private plainIndex(): Promise<TarIndex> {
    this.tarIndex ??= (async () => {
      await this.blob.ensure(0, this.blob.size);
      await this.blob.verify();
      this.completeDone = true;
      return indexTar(this.blob.path);
    })();
    return this.tarIndex;
  }

  /**
   * Fetches and verifies the chunks before the prefetch landmark (nothing with
   * `.no.prefetch.landmark` or without a landmark), once.
   */
  prefetch(): Promise<void> {
    this.prefetching ??= (async () => {
      const end = this.reader?.prefetchEnd ?? 0;
      if (this.reader && end > 0) {
        await this.blob.ensure(0, end, { signal: this.stop.signal });
        for (const { node, chunk } of this.reader.chunks) {
          if (chunk.offset < end) await this.reader.readChunk(node, chunk, { signal: this.stop.signal });
        }
      }
      this.prefetchDone = true;
    })();
    return this.prefetching;
  }

  /**
   * Fetches the rest of the blob, then verifies the blob digest; once. With less than half of it
   * local, one streaming read (one slot of `limit`) fetches it all; else the missing parts come in
   * `pieceSize` range reads through `limit` (shared by every layer). Either waits while foreground
   * reads are in flight.
   */
  fetchAll(limit: LimitFunction, pieceSize: number): Promise<void> {
    this.fetchingAll ??= (async () => {
      await this.prefetch();
      const streamed = this.blob.bytesPresent < this.blob.size / 2 && (await limit(() => this.blob.fillByStream(this.stop.signal)));
      const pieces: Promise<void>[] = [];
      for (let at = 0; !streamed && at < this.blob.size; at += pieceSize) {
        const end = Math.min(at + pieceSize, this.blob.size);
        pieces.push(limit(() => {
          this.stop.signal.throwIfAborted();
          return this.blob.ensure(at, end, { background: true, signal: this.stop.signal });
        }));
      }
      await Promise.all(pieces);
      await this.blob.verify();
      this.completeDone = true;
      this.logger.debug({ digest: this.digest, bytesFetched: this.blob.stats.bytesFetched }, 'layer complete');
    })();
    return this.fetchingAll;
  }

  /**
   * The blob's bytes in order (fetching what is missing in the foreground): what extraction reads.
   * An eStargz layer whose blob digest is not yet verified has every chunk checked against its TOC
   * digest first, so that a corrupt chunk fails before anything is applied.
   */
  async *stream(options: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    if (this.reader && !this.blob.isVerified) {
      this.verifying ??= (async () => {
        for (const { node, chunk } of this.reader!.chunks) await this.reader!.readChunk(node, chunk, options);
      })();
      await this.verifying;
    }
    yield* this.blob.stream(options);
  }
}
