/**
 * Prune's deletions, a batch of records at a time, by the one deletion protocol (deletion.ts) in
 * short slices of the manager lock, so that other calls interleave: the records are chosen and
 * marked dead under the lock, tombstoned together outside it (one durable group commit), taken out
 * of memory with their parents' handles under it again, and purged (leases, then metadata) in the
 * background while the next batch is chosen — one purge at a time.
 */
import type { ManagerContext } from './context.js';
import type { CacheRecord } from './records.js';
import { forgetRecords, purge, releaseParentsLocked, tombstone } from './deletion.js';
import { dropPrefetched, loadOrClearLocked, prefetch } from './load.js';
import type { Candidate, Census, Removed } from './prune-census.js';
import { lockedThenSweep } from './residency.js';
import { pairOf, representativeOf, usageOf, type UsageInfo } from './usage.js';

/** Deletes census candidates in batches; `drain()` waits for the purges still running. */
export class PruneDeleter {
  /**
   * The purge of the last batch, running while the next one is chosen: one at a time (a purge
   * keeps the backend and disk busy, and other calls should not queue behind several).
   */
  private purging: Promise<void> | undefined;

  constructor(
    private readonly cm: ManagerContext,
    private readonly gone: Removed,
    private readonly dryRun: boolean,
  ) {}

  /**
   * Deletes the candidates that are still free (or, in a dry run, counts them as deleted) and
   * counts them out of their parents' children; returns them with their usage. Their parents are
   * free to go in the next batch once this returns.
   */
  async deleteBatch(cands: readonly Candidate[], census: Census): Promise<[Candidate, UsageInfo][]> {
    const { cm } = this;
    const ids = cands.map((c) => c.id);
    const read = await prefetch(cm, [...ids, ...ids.flatMap((id) => census.twins.get(id) ?? [])]);
    const out: [Candidate, UsageInfo][] = [];
    const doomed: CacheRecord[] = [];
    await cm.mu(async () => {
      try {
        for (const cand of cands) {
          census.candidates.delete(cand.id);
          if (this.gone.has(cand.id) || census.children.get(cand.id) || census.newParents.has(cand.id)) continue;
          const loaded = await loadOrClearLocked(cm, cand.id);
          // Loading the committed twin links it to the mutable record: they go together.
          const twin = census.twins.get(cand.id);
          if (loaded && twin && !loaded.equalImmutable) await loadOrClearLocked(cm, twin);
          // A pair is judged by whichever of the two stands for it now (handles may have moved since the census).
          const rec = loaded && representativeOf(loaded);
          if (!rec || !this.gone.isFree(rec)) continue;
          out.push([cand, { ...usageOf(rec, false), size: cand.size }]);
          const twins = pairOf(rec);
          for (const r of twins) {
            const parent = r.md.parent;
            if (parent) census.children.set(parent, (census.children.get(parent) ?? 1) - 1);
            if (this.dryRun) this.gone.add(r);
            // Dead: callers are told it is being deleted, and nothing takes a handle on it.
            else r.dead = true;
          }
          if (!this.dryRun) doomed.push(...twins);
        }
      } catch (err) {
        // A record could not be loaded (not a definite "gone"): the batch deletes nothing.
        for (const r of doomed) r.dead = false;
        throw err;
      } finally {
        dropPrefetched(cm, read);
      }
    });
    if (doomed.length === 0) return out;
    try {
      await tombstone(doomed.map((r) => r.md));
    } catch (err) {
      await cm.mu(() => {
        for (const r of doomed) {
          r.md.deleted = false;
          r.dead = false;
        }
      });
      throw err;
    }
    await lockedThenSweep(cm, async () => {
      forgetRecords(cm, doomed);
      await releaseParentsLocked(doomed);
    });
    await this.startPurge(doomed.map((r) => r.id));
    return out;
  }

  /** Starts purging `ids` in the background, once the purge before it has finished. */
  private async startPurge(ids: readonly string[]): Promise<void> {
    await this.drain();
    this.purging = purge(this.cm, ids);
    this.purging.catch(() => undefined); // Awaited by the next startPurge or by drain().
  }

  /** Waits for the purge started last; throws its failure. */
  async drain(): Promise<void> {
    const p = this.purging;
    this.purging = undefined;
    await p;
  }
}
