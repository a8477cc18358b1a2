/**
 * One-at-a-time locks for async work: a record's lock, the manager lock, a prune's. Made for every
 * record that is ever locked (prune locks each record it deletes), so a lock costs one closure and
 * a call two promises; `pLimit(1)` costs a queue and five closures a lock and several objects a call.
 */

/** Runs `fn` once every call made before it has settled; resolves or rejects as `fn` does. */
export type SerialLock = <T>(fn: () => T | PromiseLike<T>) => Promise<T>;

const ignore = (): void => undefined;

/** A new lock, free. */
export function serialLock(): SerialLock {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => T | PromiseLike<T>): Promise<T> => {
    const run = tail.then(fn);
    tail = run.then(ignore, ignore);
    return run;
  };
}
