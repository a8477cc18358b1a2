/** Measuring how long other callers wait while long work runs (e.g. a prune). */

/**
 * Runs `work` while a second caller calls `probe` in a loop (5 ms apart); returns what `work`
 * returned, its duration in seconds, and the longest single `probe` call in milliseconds.
 */
export async function whileProbing<T>(
  work: () => Promise<T>,
  probe: () => Promise<unknown>,
): Promise<{ result: T; seconds: number; maxWaitMs: number }> {
  let maxWaitMs = 0;
  let running = true;
  const prober = (async () => {
    while (running) {
      const t0 = performance.now();
      await probe();
      maxWaitMs = Math.max(maxWaitMs, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const t0 = performance.now();
  try {
    const result = await work();
    return { result, seconds: (performance.now() - t0) / 1000, maxWaitMs: +maxWaitMs.toFixed(2) };
  } finally {
    running = false;
    await prober;
  }
}
