import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrCanceled } from '@buildcache/errdefs';
import { FlightGroup } from '../src/flight.js';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A work function whose executions are counted and finished by hand. */
function work<T>() {
  const runs: { signal: AbortSignal; done: Deferred<T> }[] = [];
  const fn = (signal: AbortSignal): Promise<T> => {
    const done = deferred<T>();
    runs.push({ signal, done });
    return done.promise;
  };
  const run = (i: number) => {
    const r = runs[i];
    assert.ok(r, `execution ${i} has not started`);
    return r;
  };
  return { runs, fn, run };
}

/** Settles the promise into an inspectable outcome. */
function outcome<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

test('concurrent callers of one key share one execution and its value', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const calls = Array.from({ length: 5 }, () => g.do('k', w.fn));
  assert.equal(w.runs.length, 1);
  assert.equal(g.has('k'), true);
  w.run(0).done.resolve(42);
  assert.deepEqual(await Promise.all(calls), [42, 42, 42, 42, 42]);
  assert.equal(w.runs.length, 1);
  assert.equal(g.size, 0);
});

test('different keys run separately', async () => {
  const g = new FlightGroup<string>();
  const w = work<string>();
  const a = g.do('a', w.fn);
  const b = g.do('b', w.fn);
  assert.equal(w.runs.length, 2);
  w.run(1).done.resolve('B');
  w.run(0).done.resolve('A');
  assert.deepEqual(await Promise.all([a, b]), ['A', 'B']);
});

test('one caller cancels: it rejects at once with ErrCanceled, the others still get the value', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const quitter = new AbortController();
  const stayer = new AbortController();
  const quitting = outcome(g.do('k', w.fn, { signal: quitter.signal }));
  const staying = g.do('k', w.fn, { signal: stayer.signal });
  const plain = g.do('k', w.fn);
  const reason = new Error('user pressed ^C');
  quitter.abort(reason);

  const q = await quitting; // settles before the work finishes
  assert.ok('error' in q);
  assert.ok(q.error instanceof ErrCanceled);
  assert.equal(q.error.cause, reason);
  assert.match(q.error.message, /user pressed \^C/);
  assert.equal(q.error.details['key'], 'k');
  assert.equal(w.run(0).signal.aborted, false);

  w.run(0).done.resolve(7);
  assert.deepEqual(await Promise.all([staying, plain]), [7, 7]);
  assert.equal(w.run(0).signal.aborted, false);
  assert.equal(w.runs.length, 1);
});

test('a caller without a signal keeps the work alive', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const ac = new AbortController();
  const cancelled = outcome(g.do('k', w.fn, { signal: ac.signal }));
  const plain = g.do('k', w.fn);
  ac.abort();
  assert.ok('error' in (await cancelled));
  assert.equal(w.run(0).signal.aborted, false);
  w.run(0).done.resolve(1);
  assert.equal(await plain, 1);
});

test('all callers cancel: the shared signal aborts, with the last reason as cause', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const a = new AbortController();
  const b = new AbortController();
  const first = outcome(g.do('k', w.fn, { signal: a.signal }));
  const second = outcome(g.do('k', w.fn, { signal: b.signal }));
  a.abort('first reason');
  assert.equal(w.run(0).signal.aborted, false);
  b.abort('last reason');
  const shared = w.run(0).signal;
  assert.equal(shared.aborted, true);
  assert.ok(shared.reason instanceof ErrCanceled);
  assert.equal((shared.reason as ErrCanceled).cause, 'last reason');

  for (const [o, reason] of [[await first, 'first reason'], [await second, 'last reason']] as const) {
    assert.ok('error' in o && o.error instanceof ErrCanceled);
    assert.equal(o.error.cause, reason);
  }
  // The key stays busy until the aborted work settles; its rejection reaches nobody.
  assert.equal(g.has('k'), true);
  w.run(0).done.reject(shared.reason);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(g.has('k'), false);
});

test('an error from the work reaches every waiter', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const calls = [g.do('k', w.fn), g.do('k', w.fn), g.do('k', w.fn, { signal: new AbortController().signal })];
  const boom = new Error('boom');
  w.run(0).done.reject(boom);
  for (const o of await Promise.all(calls.map(outcome))) {
    assert.ok('error' in o);
    assert.equal(o.error, boom);
  }
  assert.equal(g.size, 0);
});

test('a synchronous throw in the work is an error for the callers, not for do()', async () => {
  const g = new FlightGroup<number>();
  const boom = new Error('sync boom');
  const p = g.do('k', () => {
    throw boom;
  });
  await assert.rejects(p, (err) => err === boom);
  assert.equal(g.size, 0);
});

test('results are not memoised: a later call runs the work again', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const first = g.do('k', w.fn);
  w.run(0).done.resolve(1);
  assert.equal(await first, 1);
  const second = g.do('k', w.fn);
  assert.equal(w.runs.length, 2);
  w.run(1).done.resolve(2);
  assert.equal(await second, 2);
});

test('the key is free by the time waiters hear the outcome', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const again = g.do('k', w.fn).then(() => {
    assert.equal(g.has('k'), false);
    return g.do('k', w.fn);
  });
  w.run(0).done.resolve(1);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(w.runs.length, 2, 'the follow-up call started a new execution');
  w.run(1).done.resolve(2);
  assert.equal(await again, 2);
});

test('a caller arriving after every caller gave up starts a fresh execution', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const ac = new AbortController();
  const gaveUp = outcome(g.do('k', w.fn, { signal: ac.signal }));
  ac.abort();
  assert.ok('error' in (await gaveUp));
  assert.equal(w.run(0).signal.aborted, true);

  const late = g.do('k', w.fn);
  const later = g.do('k', w.fn);
  assert.equal(w.runs.length, 2, 'the late caller did not join the doomed execution');
  assert.equal(w.run(1).signal.aborted, false);

  // The doomed execution settling neither answers nor frees the fresh one.
  w.run(0).done.reject(new Error('aborted'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(g.has('k'), true);

  w.run(1).done.resolve(9);
  assert.deepEqual(await Promise.all([late, later]), [9, 9]);
  assert.equal(w.runs.length, 2);
  assert.equal(g.size, 0);
});

test('a caller whose signal is already aborted rejects without running or joining', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const reason = new Error('too late');
  await assert.rejects(g.do('k', w.fn, { signal: AbortSignal.abort(reason) }), (err) => err instanceof ErrCanceled && err.cause === reason);
  assert.equal(w.runs.length, 0);

  const running = g.do('k', w.fn);
  await assert.rejects(g.do('k', w.fn, { signal: AbortSignal.abort(reason) }), ErrCanceled);
  assert.equal(w.run(0).signal.aborted, false, 'an aborted newcomer does not count as a waiter that left');
  w.run(0).done.resolve(3);
  assert.equal(await running, 3);
});

test('aborting after the outcome arrived changes nothing', async () => {
  const g = new FlightGroup<number>();
  const w = work<number>();
  const ac = new AbortController();
  const p = g.do('k', w.fn, { signal: ac.signal });
  w.run(0).done.resolve(5);
  assert.equal(await p, 5);
  ac.abort();
  assert.equal(w.run(0).signal.aborted, false);
});
