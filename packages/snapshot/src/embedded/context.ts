/** What the embedded stores share: the root, the one metadata DB, its mutex, a clock and a logger. */
import type { Logger } from 'pino';
import type { MetaDB } from './db.js';
import type { LimitFunction } from 'p-limit';

/** Shared state of one open embedded backend. */
export interface EmbeddedContext {
  readonly root: string;
  readonly db: MetaDB;
  /** Guards every metadata mutation (and GC's mark + metadata delete). */
  readonly mutex: LimitFunction;
  /** Milliseconds since the epoch; injectable so expiry tests need no sleeps. */
  readonly clock: () => number;
  /** Nanoseconds since the epoch, for snapshot times (`clock` in whole ms when one is injected). */
  readonly clockNs: () => bigint;
  readonly logger: Logger;
}
