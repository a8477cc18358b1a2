/**
 * One ingest over the bidi Content.Write stream: STAT on open (resume point), pipelined WRITEs of
 * at most 1 MiB, COMMIT with size and digest checks. The daemon answers every request once and,
 * when the stream ends well, repeats its last answer once more; the writer reads to the end and
 * ignores that duplicate.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { ErrAlreadyExists } from '@buildcache/errdefs';
import type { BuildcacheError } from '@buildcache/errdefs';
import { checkLabels, checkNonEmpty, checkUint, fromGrpc, protocolError, toNumber } from './errors.js';
import type { CallContext } from './errors.js';
import { toDate } from './convert.js';
import type { WireTimestamp } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, Labels } from './types.js';

/** Largest data chunk per WRITE message (the Go client's buffer size). */
export const MAX_WRITE_CHUNK = 1 << 20;
/** How many WRITE messages may wait for their answer before `write` waits. */
const WINDOW = 8;

interface WireWriteRequest {
  action: 'STAT' | 'WRITE' | 'COMMIT';
  ref: string;
  total?: number;
  expected?: string;
  offset?: number;
  data?: Buffer;
  labels?: Record<string, string>;
}

interface WireWriteResponse {
  action: string;
  started_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  offset: string;
  total: string;
  digest: string;
}

/** Options of `ContentService.writer`. */
export interface WriterOptions extends CallOptions {
  /** Expected total size (0/undefined: unknown until commit). */
  readonly total?: number;
  /** Expected digest; when the blob already exists the writer is `exists` and commits at once. */
  readonly expected?: string;
}

/** Options of `ContentWriter.commit`. */
export interface CommitOptions {
  /** Size to verify (defaults to the writer's `total`; 0: not checked). */
  readonly size?: number;
  /** Digest to verify (defaults to the writer's `expected`). */
  readonly expected?: string;
  /** Labels stored on the blob (`containerd.io/gc.*` ones must be non-empty). */
  readonly labels?: Labels;
}

/** An open ingest. Create it with `ContentService.writer`. */
export class ContentWriter {
  private readonly queue: WireWriteResponse[] = [];
  private waiter: { resolve: () => void } | undefined;
  private error: BuildcacheError | undefined;
  private ended = false;
  private unacked: { action: string; offset: number }[] = [];
  private position = 0;
  private finished = false;
  /** True when the expected blob already existed at open: nothing needs writing, commit succeeds. */
  exists = false;
  /** When the ingest was started (the daemon's clock). */
  startedAt = new Date(0);

  private constructor(
    private readonly call: ClientDuplexStream<WireWriteRequest, WireWriteResponse>,
    private readonly ctx: CallContext,
    private readonly unwatch: () => void,
    readonly ref: string,
    private readonly total: number,
    private readonly expected: string,
  ) {
    call.on('data', (m: WireWriteResponse) => {
      this.queue.push(m);
      this.wake();
    });
    call.on('error', (err: unknown) => {
      this.error ??= fromGrpc(err, this.ctx);
      this.wake();
    });
    call.on('end', () => {
      // A failed status may be reported just after 'end'; let it land first.
      setImmediate(() => {
        this.ended = true;
        this.wake();
      });
    });
  }

  /** Opens (or resumes) ingest `ref`; `offset` then says how many bytes the daemon already holds. */
  static async open(scope: Scope, ref: string, options: WriterOptions = {}): Promise<ContentWriter> {
    const base: CallContext = { method: 'Content/Write', ref, ...(options.expected ? { digest: options.expected } : {}) };
    checkNonEmpty(ref, 'ref', base);
    const total = checkUint(options.total ?? 0, 'total', base);
    const { call, ctx, unwatch } = scope.bidi<WireWriteRequest, WireWriteResponse>('content', 'Write', base, options);
    const w = new ContentWriter(call, ctx, unwatch, ref, total, options.expected ?? '');
    try {
      const res = await w.request({ action: 'STAT', ref, total, expected: w.expected });
      w.position = toNumber(res.offset, 'offset', ctx);
      w.startedAt = toDate(res.started_at);
    } catch (err) {
      if (err instanceof ErrAlreadyExists && w.expected) {
        w.exists = true;
        w.finish();
        return w;
      }
      w.finish();
      throw err;
    }
    return w;
  }

  /** Bytes the daemon holds (or will hold once pending writes land): where the next write goes. */
  get offset(): number {
    return this.position;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve();
  }

  /** The next response, or the stream's error / an early end. */
  private async next(): Promise<WireWriteResponse> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.error) throw this.error;
      if (this.ended) throw protocolError('the write stream ended without an answer', this.ctx);
      await new Promise<void>((resolve) => (this.waiter = { resolve }));
    }
  }

  /** Sends one request; `expectOffset` is the offset its WRITE answer must report. */
  private send(req: WireWriteRequest, expectOffset = 0): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    this.unacked.push({ action: req.action, offset: expectOffset });
    if (this.call.write(req)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.call.off('drain', done);
        this.call.off('error', done);
        this.call.off('close', done);
        resolve();
      };
      this.call.on('drain', done);
      this.call.on('error', done);
      this.call.on('close', done);
    });
  }

  /** Takes the answer of the oldest unanswered request and checks it. */
  private async ack(): Promise<WireWriteResponse> {
    const res = await this.next();
    const sent = this.unacked.shift();
    if (!sent) throw protocolError('unexpected answer on the write stream', this.ctx);
    if (sent.action === 'WRITE') {
      const offset = toNumber(res.offset, 'offset', this.ctx);
      if (offset !== sent.offset) {
        throw protocolError(`the daemon holds ${offset} bytes, expected ${sent.offset}`, this.ctx, { offset });
      }
    }
    return res;
  }

  private async request(req: WireWriteRequest): Promise<WireWriteResponse> {
    await this.send(req);
    return this.ack();
  }

  private checkOpen(): void {
    if (this.finished && !this.exists) throw protocolError('the writer is already committed, closed or aborted', this.ctx);
  }

  /**
   * Writes `chunk` at the current offset, or at `offset` when given (which must be the current
   * offset, or 0 to truncate and start over; anything else fails with ErrOutOfRange). Writes are
   * pipelined: a failure may surface at the next write or at commit.
   */
  async write(chunk: Uint8Array, offset?: number): Promise<void> {
    this.checkOpen();
    if (this.exists) return;
    if (offset !== undefined) this.position = checkUint(offset, 'offset', this.ctx);
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    do {
      const piece = buf.subarray(at, at + MAX_WRITE_CHUNK);
      const start = this.position;
      at += piece.length;
      this.position += piece.length;
      await this.send({ action: 'WRITE', ref: this.ref, offset: start, data: piece }, this.position);
      while (this.unacked.length > WINDOW) await this.ack();
    } while (at < buf.length);
  }

  /**
   * Commits the ingest as a blob after checking size and digest (ErrFailedPrecondition on a
   * mismatch; the ingest then stays, resumable or abortable). A blob that already exists counts as
   * success. Returns the blob's digest.
   */
  async commit(options: CommitOptions = {}): Promise<string> {
    const expected = options.expected ?? this.expected;
    if (this.exists) return expected;
    this.checkOpen();
    checkLabels(options.labels, this.ctx);
    const size = checkUint(options.size ?? this.total, 'size', this.ctx);
    try {
      await this.send({
        action: 'COMMIT', ref: this.ref, offset: this.position, total: size, expected, labels: { ...(options.labels ?? {}) },
      });
      this.call.end();
      let digest = '';
      while (this.unacked.length > 0) {
        const res = await this.ack();
        if (this.unacked.length === 0) digest = res.digest;
      }
      await this.drain();
      if (!digest) throw protocolError('the daemon committed without a digest', this.ctx);
      return digest;
    } catch (err) {
      if (err instanceof ErrAlreadyExists) {
        const found = expected || /sha256:[0-9a-f]{64}/.exec(err.message)?.[0];
        if (found) return found;
      }
      throw err;
    } finally {
      this.finish();
    }
  }

  /** Reads the stream to its end (skipping the daemon's duplicate final answer). */
  private async drain(): Promise<void> {
    for (;;) {
      if (this.queue.shift()) continue;
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.waiter = { resolve }));
    }
  }

  /** Ends the stream and leaves the ingest in place, resumable from `offset` with a new writer. */
  async close(): Promise<void> {
    if (this.finished) return;
    try {
      this.call.end();
      while (this.unacked.length > 0) await this.ack();
      await this.drain();
    } finally {
      this.finish();
    }
  }

  /** Breaks the stream at once without ending it cleanly (what a crashed writer leaves behind). */
  cancel(): void {
    if (this.finished) return;
    this.call.cancel();
    this.finish();
  }

  private finish(): void {
    this.finished = true;
    this.unwatch();
  }
}
