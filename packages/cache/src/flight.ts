/**
 * Flight control: concurrent callers asking for the same key share one execution of the work
 * (BuildKit's `util/flightcontrol`, without its retries or progress replay).
 */
import { ErrCanceled } from '@buildcache/errdefs';

/** Options of `FlightGroup.do`. */
export interface FlightOptions {
  /** This caller's cancellation: it stops waiting at once; the work stops only when every caller has. */
  readonly signal?: AbortSignal;
}

interface Flight<T> {
  /** Aborted when the last waiting caller gives up. */
  readonly controller: AbortController;
  /** Callers still waiting for the result. */
  waiters: number;
  /** The outcome of the execution. */
  readonly run: Promise<T>;
}

/**
 * Runs work once per key among concurrent callers.
 *
 * - Callers of `do` with the same key while an execution is in progress share it and its outcome
 *   (value or error).
 * - `fn` gets a signal that aborts only when every waiting caller has aborted; a caller whose own
 *   signal aborts rejects at once with `ErrCanceled` (the reason as `cause`), the others keep waiting.
 * - Nothing is memoised: the key is free again once the execution settles, so the next call runs
 *   `fn` anew. A caller arriving after the shared signal aborted (but before that execution settled)
 *   starts a fresh execution instead of joining the doomed one.
 */
export class FlightGroup<T> {
  /** Made on first use: every record has several groups, and most never run anything. */
  #flights: Map<string, Flight<T>> | undefined;

  /** Runs `fn` for `key`, or joins the execution already running for it. */
  do(key: string, fn: (signal: AbortSignal) => Promise<T>, options: FlightOptions = {}): Promise<T> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(canceled(key, signal.reason));
    let flight = this.#flights?.get(key);
    if (!flight || flight.controller.signal.aborted) flight = this.#start(key, fn);
    return this.#wait(key, flight, signal);
  }

  /** How many keys have an execution in progress. */
  get size(): number {
    return this.#flights?.size ?? 0;
  }

  /** True while an execution for `key` is in progress (even one whose callers all gave up). */
  has(key: string): boolean {
    return this.#flights?.has(key) ?? false;
  }

  #start(key: string, fn: (signal: AbortSignal) => Promise<T>): Flight<T> {
    let settleRun: (outcome: T | Promise<T>) => void = () => undefined;
    const run = new Promise<T>((resolve) => {
      settleRun = resolve;
    });
    const flight: Flight<T> = { controller: new AbortController(), waiters: 0, run };
    // Attached first, so that the key is free before any waiter hears the outcome; it also keeps a
    // rejection that nobody waits for any more from being reported as unhandled.
    const release = (): void => {
      if (this.#flights?.get(key) === flight) this.#flights.delete(key);
    };
    void run.then(release, release);
    // Registered before fn runs: a call from inside fn for the same key joins (and so waits on) itself.
    (this.#flights ??= new Map()).set(key, flight);
    try {
      settleRun(fn(flight.controller.signal));
    } catch (err) {
      settleRun(Promise.reject(err));
    }
    return flight;
  }

  #wait(key: string, flight: Flight<T>, signal: AbortSignal | undefined): Promise<T> {
    const { run } = flight;
    flight.waiters++;
    return new Promise<T>((resolve, reject) => {
      let waiting = true;
      const onAbort = (): void => {
        if (!waiting || !signal) return;
        waiting = false;
        reject(canceled(key, signal.reason));
        flight.waiters--;
        if (flight.waiters === 0) {
          flight.controller.abort(
            new ErrCanceled(`flight ${JSON.stringify(key)}: every caller canceled`, { cause: signal.reason, details: { key } }),
          );
        }
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (): boolean => {
        if (!waiting) return false;
        waiting = false;
        flight.waiters--;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      void run.then(
        (value) => {
          if (finish()) resolve(value);
        },
        (err: unknown) => {
          if (finish()) reject(err);
        },
      );
    });
  }
}

function canceled(key: string, reason: unknown): ErrCanceled {
  const why = reason instanceof Error ? reason.message : String(reason);
  return new ErrCanceled(`flight ${JSON.stringify(key)}: canceled: ${why}`, { cause: reason, details: { key } });
}
