/**
 * The daemon's side of a Build call's client stream. A BuildAbort message, wherever it comes, is
 * ErrCanceled: thrown to whatever reads the stream next, and the build's signal is aborted with it.
 * After the context (ContextEnd) the rest of the stream is read in the background while the build
 * runs: the `--cache-from` blobs the daemon asked for (`want`), and an abort, so a client that fails
 * on its side can stop the build and wait for the call's status, which comes only once the call's
 * scratch directory is gone.
 */
import { ErrCanceled, ErrInvalidArgument, ErrUnavailable } from '@buildcache/errdefs';
import type { Descriptor } from '@buildcache/snapshot';
import { Lookahead, receiveBlobs, type ArrivingBlob, type WireCacheBlob } from './cache-layouts.js';

/** A message of a client stream: its one field named by the oneof `input`. */
export type Input<K extends string, V> = { input?: K } & { [P in K]?: V };

/** Any message of the Build call's client stream. */
type Message = Input<string, unknown>;

/** The client's messages with BuildAbort turned into ErrCanceled. */
async function* abortable(input: AsyncIterable<Message>): AsyncGenerator<Message> {
  for await (const m of input) {
    if (m.input === 'abort') {
      const reason = (m as Input<'abort', { reason?: string }>).abort?.reason || 'no reason given';
      throw new ErrCanceled(`Build: aborted by the client: ${reason}`, { details: { reason } });
    }
    yield m;
  }
}

/** The client stream of one Build call. */
export class BuildInput {
  private readonly it: Lookahead<Message>;
  private readonly aborter = new AbortController();
  /** The blobs asked for and not arrived yet, by `cache digest`. */
  private readonly waiting = new Map<string, { resolve(): void; reject(err: unknown): void }>();
  /** Whether blobs can still come (after ContextEnd, until the client's side ends). */
  private listening = false;
  /** Aborted when the call is (the client cancelled or went away) or the client sent BuildAbort. */
  readonly signal: AbortSignal;

  constructor(input: AsyncIterable<Message>, callSignal: AbortSignal) {
    this.it = new Lookahead(abortable(input)[Symbol.asyncIterator]());
    this.signal = AbortSignal.any([callSignal, this.aborter.signal]);
  }

  /** The next message without taking it (undefined at the end). */
  peek(): Promise<Message | undefined> {
    return this.it.peek().catch((err: unknown) => this.fail(err));
  }

  /** Takes the next message. */
  next(): Promise<IteratorResult<Message>> {
    return this.it.next().catch((err: unknown) => this.fail(err));
  }

  /** The context's tar: the bytes of the context messages up to the next message of another kind. */
  async *context(): AsyncGenerator<Buffer> {
    for (let m = await this.peek(); m?.input === 'context'; m = await this.peek()) {
      await this.next();
      yield (m as Input<'context', Buffer>).context!;
    }
  }

  /**
   * Reads past the context (the tar's end-of-archive padding) to ContextEnd, then keeps reading in
   * the background: each blob asked for goes to `receive`; BuildAbort or any other message aborts
   * `signal`. A client that half-closes instead (it can neither abort nor send blobs) is accepted too.
   */
  async endOfContext(receive: (blob: ArrivingBlob) => Promise<void>): Promise<void> {
    for (let r = await this.next(); !r.done; r = await this.next()) {
      const m = r.value;
      if (m.input === 'contextEnd') {
        this.listening = true;
        void this.listen(receive);
        return;
      }
      if (m.input !== 'context') throw new ErrInvalidArgument(`Build: after the context only contextEnd may follow, not ${m.input ?? 'an empty message'}`);
    }
  }

  /**
   * Has the client send blob `desc` of `cacheFrom[cache]`: `ask` sends the request; resolves once the
   * blob went to `receive` (rejects with what `receive` threw, or when the call ends first).
   */
  async want(cache: number, desc: Descriptor, ask: () => Promise<void>): Promise<void> {
    if (!this.listening) throw new ErrUnavailable(`Build: blob ${desc.digest} of cacheFrom[${cache}] is needed, and the client can no longer send it`);
    const key = `${cache} ${desc.digest}`;
    const arrived = new Promise<void>((resolve, reject) => this.waiting.set(key, { resolve, reject }));
    void arrived.catch(() => undefined); // awaited below, unless asking fails first
    await ask();
    await arrived;
  }

  /** Reads the stream to its end while the build runs. */
  private async listen(receive: (blob: ArrivingBlob) => Promise<void>): Promise<void> {
    const pick = (m: Message): WireCacheBlob | undefined => (m.input === 'cache' ? (m as Input<'cache', WireCacheBlob>).cache : undefined);
    try {
      for (let m = await this.peek(); m !== undefined; m = await this.peek()) {
        if (m.input !== 'cache') throw new ErrInvalidArgument(`Build: after contextEnd only cache blobs asked for and abort may follow, not ${m.input ?? 'an empty message'}`);
        await receiveBlobs(this, pick, async (blob) => {
          const key = `${blob.cache} ${blob.desc.digest}`;
          const waiter = this.waiting.get(key);
          if (!waiter) throw new ErrInvalidArgument(`Build: cache blob ${blob.desc.digest} for cacheFrom[${blob.cache}], which the daemon did not ask for`);
          this.waiting.delete(key);
          await receive(blob).then(() => waiter.resolve(), (err: unknown) => waiter.reject(err));
        });
      }
    } catch (err) {
      this.aborter.abort(err);
    } finally {
      this.listening = false;
      for (const w of this.waiting.values()) w.reject(new ErrUnavailable('Build: the client\'s side ended before it sent the blobs asked for'));
      this.waiting.clear();
    }
  }

  /** Aborts the build's signal with `err` (the client's abort) and throws it. */
  private fail(err: unknown): never {
    if (err instanceof ErrCanceled) this.aborter.abort(err);
    throw err;
  }
}
