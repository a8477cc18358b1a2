/** Deferred metadata commits: advisory fields of many records written together, within a second. */
import type { Logger } from 'pino';
import type { RecordMetadata } from './record-metadata.js';

/** Collects records whose queued metadata may wait, and commits them together. */
export class DeferredCommits {
  private readonly pending = new Set<RecordMetadata>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly logger: Logger,
    private readonly delayMs = 1000,
  ) {}

  /** Commits `md` within `delayMs` (sooner if another commit of the record comes first). */
  add(md: RecordMetadata): void {
    this.pending.add(md);
    if (this.timer) return;
    this.timer = setTimeout(() => void this.flush(), this.delayMs);
    this.timer.unref();
  }

  /** Commits everything pending now (concurrent commits share durable batches). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.pending];
    this.pending.clear();
    this.flushing = this.flushing.then(() =>
      Promise.all(
        batch.map((md) =>
          md.commit().catch((err: unknown) => this.logger.warn({ id: md.id, err }, 'could not write last-used time')),
        ),
      ).then(() => undefined),
    );
    return this.flushing;
  }
}
