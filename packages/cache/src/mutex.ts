/** A small async mutex: one holder at a time, waiters served in arrival order. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = 0;

  /** Whether someone holds or waits for the lock. */
  get locked(): boolean {
    return this.held > 0;
  }

  /** Waits for the lock; call the returned function exactly once to release it. */
  async acquire(): Promise<() => void> {
    this.held++;
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.tail;
    this.tail = previous.then(() => next);
    await previous;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.held--;
      release();
    };
  }

  /** Runs `fn` while holding the lock. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
