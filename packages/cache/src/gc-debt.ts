/**
 * Whether a garbage collection is owed: set durably before the cache deletes any lease, cleared
 * after a collection that nothing new was owed during. Open collects only when it is set (or when
 * repair itself removed something), so a clean start does not walk the whole backend.
 */
import type { MetadataStore } from '@buildcache/metadata';
import type { Backend } from '@buildcache/snapshot';

/** Metadata item holding the manager's own state (never a record: record IDs are base32). */
export const STATE_ITEM = '.buildcache-state';
const KEY = 'gc.pending';

/** The GC debt of one open manager. */
export class GCDebt {
  private generation = 0;
  private recorded = false;

  constructor(private readonly store: MetadataStore) {}

  /** Records (durably, once per collection cycle) that garbage is about to be left behind. */
  async owe(): Promise<void> {
    this.generation++;
    if (this.recorded) return;
    this.recorded = true;
    const item = await this.store.get(STATE_ITEM);
    item.set(KEY, true);
    await item.commit();
  }

  /** Whether a collection is owed (from an earlier process, too). */
  async pending(): Promise<boolean> {
    return this.recorded || (await this.store.get(STATE_ITEM)).get(KEY) === true;
  }

  /** Collects garbage, then clears the debt unless more was owed meanwhile. */
  async collect(backend: Backend): Promise<void> {
    const before = this.generation;
    await backend.garbageCollect();
    if (this.generation !== before) return;
    const item = await this.store.get(STATE_ITEM);
    if (item.get(KEY) === undefined) return;
    item.delete(KEY);
    await item.commit();
    if (this.generation === before) this.recorded = false;
  }
}
