/**
 * A remote blob mirrored into a local sparse file as it is read: ranges already fetched are served
 * from disk, missing ones fetched once (concurrent readers of the same range share the fetch).
 * Foreground reads go first; background fetching waits while any foreground read is in flight.
 * When every byte is present the file is hashed and checked against the blob digest.
 */
import { lazyReads } from './metrics.js';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { ErrDigestMismatch } from '@buildcache/errdefs';
import { checkRange, type RangeReader } from '@buildcache/estargz';
import { RangeSet } from './ranges.js';

/** A blob's remote: range reads, and optionally one streaming read of the whole blob (cheaper for a full fetch). */
export interface RemoteSource extends RangeReader {
  /** The whole blob, verified as it flows: it errors instead of ending when the bytes do not hash to the blob digest. */
  stream?(options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array>;
}

/** Counters of one blob. */
export interface BlobStats {
  /** Bytes fetched from the remote. */
  bytesFetched: number;
  /** Range requests made. */
  requests: number;
}

interface InFlight {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<void>;
}

/** Tracks foreground reads so that background work can yield to them. */
export class Priority {
  private active = 0;
  private waiters: Array<() => void> = [];

  /** Runs `fn` as a foreground read. */
  async foreground<T>(fn: () => Promise<T>): Promise<T> {
    this.active++;
    try {
      return await fn();
    } finally {
      if (--this.active === 0) for (const w of this.waiters.splice(0)) w();
    }
  }

  /** Resolves once no foreground read is in flight. */
  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** A remote blob with a local, partly filled copy. */
export class SparseBlob implements RangeReader {
  private readonly present = new RangeSet();
  private readonly inflight = new Set<InFlight>();
  readonly stats: BlobStats = { bytesFetched: 0, requests: 0 };
  private verified = false;
  /** Range fetches written so far (a streamed copy is verified only if none landed meanwhile). */
  private rangeWrites = 0;

  private constructor(
    readonly digest: string,
    private readonly remote: RemoteSource,
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly priority: Priority,
  ) {}

  /** Creates (truncating) the local file at `path` for blob `digest` read through `remote`. */
  static async create(digest: string, remote: RemoteSource, path: string, priority: Priority): Promise<SparseBlob> {
    const fh = await open(path, 'w+');
    await fh.truncate(remote.size);
    return new SparseBlob(digest, remote, path, fh, priority);
  }

  get size(): number {
    return this.remote.size;
  }

  /** Bytes present locally. */
  get bytesPresent(): number {
    return this.present.covered;
  }

  /** Whether every byte is present. */
  get complete(): boolean {
    return this.present.has(0, this.size);
  }

  /** Fetches the missing parts of [start, end) (sharing fetches already running), as foreground or background work. */
  async ensure(start: number, end: number, options: { background?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const run = async (): Promise<void> => {
      for (;;) {
        const missing = this.present.missing(start, end);
        if (!missing.length) return;
        const waits: Promise<void>[] = [];
        for (const [s, e] of missing) {
          const overlapping = [...this.inflight].filter((f) => f.start < e && f.end > s);
          if (overlapping.length) waits.push(...overlapping.map((f) => f.done));
          else waits.push(this.fetch(s, e, options.signal));
        }
        await Promise.all(waits);
      }
    };
    if (options.background) {
      await this.priority.idle();
      return run();
    }
    return this.priority.foreground(run);
  }

  private fetch(start: number, end: number, signal?: AbortSignal): Promise<void> {
    const done = (async () => {
      this.stats.requests++;
      const data = await this.remote.readAt(start, end - start, signal ? { signal } : {});
      this.stats.bytesFetched += data.length;
      await this.fh.write(data, 0, data.length, start);
      this.rangeWrites++;
      this.present.add(start, end);
    })();
    const flight: InFlight = { start, end, done };
    this.inflight.add(flight);
    void done.finally(() => this.inflight.delete(flight)).catch(() => undefined);
    return done;
  }

  /**
   * Fetches the whole blob with one streaming read when the remote offers one (else returns
   * false): bytes are written as they arrive (over any fetched before) and become readable at
   * once; between chunks the stream waits while foreground reads are in flight. The stream is
   * verified as it flows, so the copy counts as verified unless a range fetch wrote meanwhile or is still running.
   */
  async fillByStream(signal?: AbortSignal): Promise<boolean> {
    if (!this.remote.stream) return false;
    this.stats.requests++;
    const writesBefore = this.rangeWrites;
    let at = 0;
    for await (const chunk of this.remote.stream(signal ? { signal } : {})) {
      await this.priority.idle();
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      await this.fh.write(buf, 0, buf.length, at);
      this.present.add(at, at + buf.length);
      this.stats.bytesFetched += buf.length;
      at += buf.length;
    }
    if (at === this.size && this.rangeWrites === writesBefore && this.inflight.size === 0) this.verified = true;
    return true;
  }

  /** Reads [offset, offset+length), fetching what is missing in the foreground. */
  async readAt(offset: number, length: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    checkRange(this.size, offset, length, `blob ${this.digest}`);
    lazyReads.inc({ source: this.present.missing(offset, offset + length).length ? 'remote' : 'local' });
    await this.ensure(offset, offset + length, options);
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf;
  }

  /** Whether the local copy is complete and known to hash to the blob digest. */
  get isVerified(): boolean {
    return this.verified;
  }

  /** Hashes the complete local copy (unless already verified); ErrDigestMismatch when it is not the blob. */
  async verify(): Promise<void> {
    if (this.verified) return;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(this.path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== this.digest) {
      throw new ErrDigestMismatch(`blob ${this.digest} fetched from its remote hashes to ${actual}; the remote serves other bytes`, {
        details: { digest: this.digest, actual },
      });
    }
    this.verified = true;
  }

  /** The blob's bytes in order, fetching missing pieces in the foreground. */
  async *stream(options: { signal?: AbortSignal; pieceSize?: number } = {}): AsyncGenerator<Buffer> {
    const piece = options.pieceSize ?? 4 << 20;
    for (let at = 0; at < this.size; at += piece) yield await this.readAt(at, Math.min(piece, this.size - at), options);
  }

  /** Closes and deletes the local file. */
  async dispose(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.path, { force: true });
  }
}
