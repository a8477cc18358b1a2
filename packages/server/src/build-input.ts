/**
 * The daemon's side of a Build call's client stream. A BuildAbort message, wherever it comes, is
 * ErrCanceled: thrown to whatever reads the stream next, and the build's signal is aborted with it.
 * After the context (ContextEnd) the rest of the stream is read in the background while the build
 * runs, so a client that fails on its side can stop the build and wait for the call's status, which
 * comes only once the call's scratch directory is gone.
 */
import { ErrCanceled, ErrInvalidArgument } from '@buildcache/errdefs';
import { Lookahead } from './cache-layouts.js';

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
   * the background: BuildAbort or any other message aborts `signal`. A client that half-closes
   * instead (it cannot abort) is accepted too.
   */
  async endOfContext(): Promise<void> {
    for (let r = await this.next(); !r.done; r = await this.next()) {
      const m = r.value;
      if (m.input === 'contextEnd') {
        void this.listen();
        return;
      }
      if (m.input !== 'context') throw new ErrInvalidArgument(`Build: after the context only contextEnd may follow, not ${m.input ?? 'an empty message'}`);
    }
  }

  /** Reads the stream to its end while the build runs. */
  private async listen(): Promise<void> {
    try {
      const r = await this.next();
      if (!r.done) throw new ErrInvalidArgument(`Build: after contextEnd only abort may follow, not ${r.value.input ?? 'an empty message'}`);
    } catch (err) {
      this.aborter.abort(err);
    }
  }

  /** Aborts the build's signal with `err` (the client's abort) and throws it. */
  private fail(err: unknown): never {
    if (err instanceof ErrCanceled) this.aborter.abort(err);
    throw err;
  }
}
