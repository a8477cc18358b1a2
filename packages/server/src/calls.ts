/**
 * The plumbing every handler shares: typed errors as gRPC statuses, a cancellation signal per call,
 * back-pressured stream writes, concurrency limits (RESOURCE_EXHAUSTED past them), and the set of
 * calls in flight that a graceful shutdown waits for.
 */
import type {
  handleBidiStreamingCall, handleServerStreamingCall, handleUnaryCall, ServerDuplexStream, ServerUnaryCall, ServerWritableStream,
  ServiceError, UntypedHandleCall,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ErrCanceled, ErrNotImplemented, ErrResourceExhausted, ErrUnavailable } from '@buildcache/errdefs';
import { status as Status } from '@grpc/grpc-js';
import { toStatus } from './status.js';
import { callSeconds, callsInFlight, callsTotal, recordsSent } from './metrics.js';

const CODE_NAMES = new Map(Object.entries(Status).map(([name, code]) => [code as number, name]));

/** Counts an answered call by its status (`err` undefined: OK). */
function answered(method: string, err: unknown, started?: number): void {
  const code = err === undefined ? Status.OK : (toStatus(err).code ?? Status.UNKNOWN);
  callsTotal.inc({ method, code: CODE_NAMES.get(code) ?? String(code) });
  if (started !== undefined) callSeconds.observe({ method }, (performance.now() - started) / 1000);
}

/** At most `max` holders at once; `enter()` past that fails with ErrResourceExhausted. */
export class Gate {
  private active = 0;
  constructor(
    readonly max: number,
    private readonly what: string,
  ) {}

  /** Takes a slot; returns its release. */
  enter(): () => void {
    if (this.active >= this.max) {
      throw new ErrResourceExhausted(`too many ${this.what} at once (limit ${this.max}); retry when some have finished`, {
        details: { limit: this.max },
      });
    }
    this.active++;
    let done = false;
    return () => {
      if (!done) this.active--;
      done = true;
    };
  }
}

/** What a streaming handler gets besides its request. */
export interface StreamScope {
  /** Aborted when the client cancels or goes away, or (for long-lived calls) when the server shuts down. */
  readonly signal: AbortSignal;
  /** Writes one reply, waiting while the client is not reading (rejects once the call is cancelled). */
  send(message: object): Promise<void>;
}

/** Options of one method. */
export interface MethodOptions {
  /** Limits this method shares with others (e.g. every disk-usage call); each must admit the call. */
  readonly gates?: readonly Gate[];
  /** Ends by itself only when the client cancels (Hold): a shutdown aborts it instead of waiting. */
  readonly longLived?: boolean;
}

/** Builds handlers and tracks their calls. */
export class Calls {
  private readonly inflight = new Set<Promise<void>>();
  private readonly longLived = new Set<AbortController>();
  private draining = false;

  constructor(
    private readonly logger: Logger,
    private readonly callGate: Gate,
  ) {}

  private admit(name: string, options: MethodOptions): () => void {
    if (this.draining) throw new ErrUnavailable(`${name}: the daemon is shutting down; retry against its successor`);
    const taken: (() => void)[] = [];
    const leave = (): void => {
      for (const release of taken.splice(0)) release();
    };
    try {
      for (const gate of [this.callGate, ...(options.gates ?? [])]) taken.push(gate.enter());
    } catch (err) {
      leave();
      throw err;
    }
    callsInFlight.inc();
    return () => {
      callsInFlight.dec();
      leave();
    };
  }

  /** Admits a call, or answers it with the refusal through `refuse` and returns undefined. */
  private enter(name: string, options: MethodOptions, refuse: (status: Partial<ServiceError>) => void): (() => void) | undefined {
    try {
      return this.admit(name, options);
    } catch (err) {
      answered(name, err);
      refuse(toStatus(err));
      return undefined;
    }
  }

  private track(run: Promise<void>): void {
    this.inflight.add(run);
    void run.finally(() => this.inflight.delete(run));
  }

  /** A unary handler. */
  unary<Req, Res extends object>(name: string, fn: (req: Req) => Promise<Res>, options: MethodOptions = {}): handleUnaryCall<Req, Res> {
    return (call: ServerUnaryCall<Req, Res>, callback) => {
      const started = performance.now();
      const leave = this.enter(name, options, (status) => callback(status));
      if (!leave) return;
      this.track(
        fn(call.request).then(
          (res) => {
            answered(name, undefined, started);
            callback(null, res);
          },
          (err: unknown) => {
            this.logger.debug({ err, method: name }, 'call failed');
            answered(name, err, started);
            callback(toStatus(err));
          },
        ).finally(leave),
      );
    };
  }

  /** A server-streaming handler; returning ends the stream with OK. */
  stream<Req, Res extends object>(
    name: string, fn: (req: Req, scope: StreamScope) => Promise<void>, options: MethodOptions = {},
  ): handleServerStreamingCall<Req, Res> {
    return (call: ServerWritableStream<Req, Res>) => this.serve(name, call, call.request, fn, options);
  }

  /** A bidirectional handler: `fn` reads the client's messages as an async iterable; returning ends the stream with OK. */
  duplex<Req, Res extends object>(
    name: string, fn: (input: AsyncIterable<Req>, scope: StreamScope) => Promise<void>, options: MethodOptions = {},
  ): handleBidiStreamingCall<Req, Res> {
    // Reading the requests to their end must not destroy the call: the replies go out afterwards.
    return (call: ServerDuplexStream<Req, Res>) => this.serve(name, call, { [Symbol.asyncIterator]: () => call.iterator({ destroyOnReturn: false }) }, fn, options);
  }

  /** Runs one streaming call: admission, cancellation, back-pressured replies, the final status. */
  private serve<In, Res>(
    name: string, call: ServerWritableStream<unknown, Res> | ServerDuplexStream<unknown, Res>, input: In, fn: (input: In, scope: StreamScope) => Promise<void>, options: MethodOptions,
  ): void {
    const started = performance.now();
    const leave = this.enter(name, options, (status) => call.emit('error', status));
    if (!leave) return;
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new ErrUnavailable(`${name}: cancelled by the client`)));
    if (options.longLived) this.longLived.add(controller);
    const sent = recordsSent.labels({ method: name });
    const scope: StreamScope = {
      signal: controller.signal,
      send: (m) => {
        sent.inc();
        return send(call, m as Res, controller.signal);
      },
    };
    this.track(
      fn(input, scope).then(
        () => {
          const aborted = controller.signal.aborted && !call.cancelled;
          answered(name, aborted ? controller.signal.reason : undefined, started);
          if (aborted) call.emit('error', toStatus(controller.signal.reason));
          else call.end();
        },
        (err: unknown) => {
          answered(name, call.cancelled ? new ErrCanceled(`${name}: cancelled by the client`) : err, started);
          if (call.cancelled) return;
          this.logger.debug({ err, method: name }, 'call failed');
          call.emit('error', toStatus(err));
        },
      ).finally(() => {
        this.longLived.delete(controller);
        leave();
      }),
    );
  }

  /** A handler of any shape that answers UNIMPLEMENTED with `message`. */
  unimplemented(message: string): UntypedHandleCall {
    const status = toStatus(new ErrNotImplemented(message));
    return ((call: { emit?: (e: string, s: unknown) => void }, callback?: (s: unknown) => void) => {
      if (typeof callback === 'function') callback(status);
      else call.emit?.('error', status);
    }) as UntypedHandleCall;
  }

  /**
   * Stops admitting calls, aborts long-lived ones, and waits up to `timeoutMs` for the rest.
   * Returns whether every call finished in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    for (const c of this.longLived) c.abort(new ErrUnavailable('the daemon is shutting down'));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((res) => (timer = setTimeout(() => res(false), timeoutMs)));
    const done = this.settled().then((): true => true);
    try {
      return await Promise.race([done, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when no call is in flight (after a forced shutdown cancelled them). */
  async settled(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }
}

/**
 * Lets other calls run every `every` items of a long loop: du over records already in memory
 * completes without I/O, and would otherwise hold the event loop for the whole cache.
 */
export function turnTaker(every = 256): () => Promise<void> | undefined {
  let n = 0;
  return () => (++n % every === 0 ? new Promise<void>((res) => setImmediate(res)) : undefined);
}

/** Writes `message`, waiting for 'drain' when the stream's buffer is full. */
function send<Res>(call: ServerWritableStream<unknown, Res> | ServerDuplexStream<unknown, Res>, message: Res, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = (): void => {
      call.off('drain', onDrain);
      reject(signal.reason as Error);
    };
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
