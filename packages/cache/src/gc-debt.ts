/**
 * Whether a garbage collection is owed: set durably before the cache deletes any lease, cleared
 * after a collection that nothing new was owed during. Open collects only when it is set (or when
 * repair itself removed something), so a clean start does not walk the whole backend.
 */
import type { MetadataStore } from '@buildcache/metadata';
import type { Backend } from '@buildcache/snapshot';
import { serialLock } from './serial.js';

/** Metadata item holding the manager's own state (never a record: record IDs are base32). */
export const STATE_ITEM = '.buildcache-state';
const KEY = 'gc.pending';

/** The GC debt of one open manager. */
export class GCDebt {
  private generation = 0;
  /** The durable write of the debt of the current cycle (shared by every caller of the cycle). */
  private recorded: Promise<void> | undefined;
  /** Writes of the flag, in order: a new debt is never overtaken by the clearing of an old one. */
  private readonly writes = serialLock();

  constructor(private readonly store: MetadataStore) {}

  /** Resolves once the debt is on disk (written once per collection cycle). */
  async owe(): Promise<void> {
    this.generation++;
    this.recorded ??= this.write(true).catch((err: unknown) => {
      this.recorded = undefined;
      throw err;
    });
    await this.recorded;
  }

  /** Whether a collection is owed (from an earlier process, too). */
  async pending(): Promise<boolean> {
    return this.recorded !== undefined || (await this.store.get(STATE_ITEM)).get(KEY) === true;
  }

  /** Collects garbage, then clears the debt unless more was owed meanwhile. */
  async collect(backend: Backend): Promise<void> {
    const before = this.generation;
    await backend.garbageCollect();
    if (this.generation !== before) return;
    // From here a new debt starts a new write, queued after this one.
    this.recorded = undefined;
    await this.write(false);
  }

  private write(owed: boolean): Promise<void> {
    return this.writes(async () => {
      const item = await this.store.get(STATE_ITEM);
      if (owed) item.set(KEY, true);
      else if (item.get(KEY) !== undefined) item.delete(KEY);
      await item.commit();
    });
  }
}
