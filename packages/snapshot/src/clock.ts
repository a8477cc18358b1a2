/**
 * `nowNs()`: the wall clock in nanoseconds, for timestamps finer than `Date.now()`'s milliseconds
 * (containerd's snapshot times are nanoseconds) and strictly ordered within the process.
 */

/** Wall-clock nanoseconds minus the monotonic timer's, taken on a millisecond edge of the wall clock. */
let offset: bigint | undefined;
const MS = 1_000_000n;

/** The offset, measured when `Date.now()` ticks (so sub-millisecond exact; waits at most 1 ms). */
function anchor(): bigint {
  const start = Date.now();
  let ms: number;
  do ms = Date.now();
  while (ms === start);
  return BigInt(ms) * MS - process.hrtime.bigint();
}

/** The wall clock read through the monotonic high-resolution timer; re-anchored when the wall clock was set. */
function wallNs(): bigint {
  offset ??= anchor();
  const ns = offset + process.hrtime.bigint();
  const wall = BigInt(Date.now()) * MS;
  if (ns >= wall - MS && ns <= wall + 2n * MS) return ns;
  offset = anchor();
  return offset + process.hrtime.bigint();
}

/** `clock`, made strictly increasing: a reading not past the previous one gives the previous one + 1 ns. */
export function strictlyIncreasing(clock: () => bigint): () => bigint {
  let last = 0n;
  return () => {
    const ns = clock();
    last = ns > last ? ns : last + 1n;
    return last;
  };
}

/** Nanoseconds since the Unix epoch, strictly increasing across calls in this process. */
export const nowNs: () => bigint = strictlyIncreasing(wallNs);

/** Whole milliseconds of a nanosecond time (for `Date`). */
export function nsToMs(ns: bigint): number {
  return Number(ns / MS);
}

/** Nanoseconds of a millisecond time. */
export function msToNs(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * MS;
}
