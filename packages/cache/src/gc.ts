/**
 * Automatic garbage collection: BuildKit's default policies (caps derived from the disk that holds
 * the cache) or custom ones, run throttled after cache operations and on a timer while idle.
 */
import type { Logger } from 'pino';
import type { DiskStat, PrunePolicy } from './prune.js';

const GB = 1e9;
const HOUR = 3600_000;

/** BuildKit's default policies for a disk of the given size. */
export function defaultGCPolicy(disk: DiskStat): PrunePolicy[] {
  const caps = {
    reservedSpace: Math.min(disk.total * 0.1, 10 * GB),
    minFreeSpace: disk.total * 0.2,
    maxUsedSpace: Math.min(disk.total * 0.8, 100 * GB),
  };
  return [
    {
      // Several strings are OR-ed: any of these types (one comma-joined string would be an AND).
      filters: ['type==source.local', 'type==exec.cachemount', 'type==source.git.checkout'],
      keepDurationMs: 48 * HOUR,
      maxUsedSpace: 512e6,
    },
    { keepDurationMs: 60 * 24 * HOUR, ...caps },
    { ...caps },
    { all: true, ...caps },
  ];
}

/** Options of automatic GC. */
export interface GCOptions {
  /** Policies to apply; default: `defaultGCPolicy` of the disk holding the cache. */
  readonly policies?: readonly PrunePolicy[];
  /** Least time between two runs triggered by operations (default 60 s). */
  readonly throttleMs?: number;
  /** Run at least this often while idle (default 10 min). */
  readonly intervalMs?: number;
}

/** Runs `collect` at most once per throttle window after `poke()`, and on an idle timer. */
export class GCScheduler {
  private lastRun = 0;
  private pending: NodeJS.Timeout | undefined;
  private readonly idle: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly collect: () => Promise<void>,
    private readonly logger: Logger,
    private readonly throttleMs = 60_000,
    intervalMs = 600_000,
  ) {
    this.idle = setInterval(() => this.runNow(), intervalMs);
    this.idle.unref();
  }

  /** Notes that the cache changed; a run follows within the throttle window. */
  poke(): void {
    if (this.stopped || this.pending) return;
    const wait = Math.max(1000, this.lastRun + this.throttleMs - Date.now());
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.runNow();
    }, wait);
    this.pending.unref();
  }

  private runNow(): void {
    if (this.stopped || this.running) return;
    this.lastRun = Date.now();
    this.running = this.collect()
      .catch((err: unknown) => this.logger.warn({ err }, 'automatic garbage collection failed'))
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Stops the timers and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.idle);
    if (this.pending) clearTimeout(this.pending);
    await this.running;
  }
}
