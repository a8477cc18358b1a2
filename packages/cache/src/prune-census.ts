/**
 * What prune needs to know of every stored record, read in one streamed pass (record ID order, a
 * batch at a time, so records do not pile up in memory): the records a policy matches, with their
 * sizes and LRU/LFU keys, and how many live children each record has (a record with children is
 * not free to delete, whether or not the children are in memory).
 */
import pLimit from 'p-limit';
import type { ManagerContext } from './context.js';
import type { CacheRecord, Handle } from './records.js';
import type { RecordMetadata } from './record-metadata.js';
import { compileFilters } from './du.js';
import { StoredScan, type Unsized } from './stored.js';
import { unpin } from './residency.js';
import { watchNewChildrenLocked } from './new-children.js';
import { filterAdaptor, inUseSet, isHeld, isHeldMetadata, isRepresentative, usageOfMetadata } from './usage.js';
import type { PrunePolicy } from './prune.js';

/** What prune keeps of a record a policy matches, instead of the record. */
export interface Candidate {
  readonly id: string;
  readonly parent: string | undefined;
  readonly lastUsedNs: bigint | undefined;
  readonly usageCount: number;
  size: number;
}

/** The records a policy matches, the live children of every record, and the bytes space caps count. */
export interface Census {
  readonly candidates: Map<string, Candidate>;
  readonly children: Map<string, number>;
  /** The committed twin of each mutable record that has one (a mutable record alone does not know it). */
  readonly twins: Map<string, string>;
  /** Records that gained a child since the census began (new-children.ts): not free, whatever `children` says. */
  readonly newParents: ReadonlySet<string>;
  readonly total: number;
}

/** Records a dry run treats as deleted (by ID), and the handles they held on their parents. */
export class Removed {
  private readonly ids = new Set<string>();
  private readonly handles = new WeakSet<Handle>();
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(rec: CacheRecord): void {
    this.ids.add(rec.id);
    if (rec.parent) this.handles.add(rec.parent);
  }
  /** No live handle on the record (nor on its equal immutable) but those of removed children, and no holder outside the cache. */
  isFree(rec: CacheRecord): boolean {
    if (isHeld(rec)) return false;
    for (const h of rec.refs) if (!this.handles.has(h)) return false;
    return !(rec.equalImmutable && rec.equalImmutable.refs.size > 0);
  }
}

/** A record the census sizes: the candidate it is (if the policy matches it) and whether space caps count it. */
interface Sizing extends Unsized {
  readonly cand: Candidate | undefined;
  readonly counted: boolean;
}

/** Whether a record's metadata matches the policy's type, age and filters. */
function matcher(cm: ManagerContext, policy: PrunePolicy): (md: RecordMetadata, mutable: boolean) => boolean {
  const filter = compileFilters(policy.filters);
  const now = cm.now();
  return (md, mutable) => {
    const type = md.recordType;
    if (!policy.all && (type === 'internal' || type === 'frontend')) return false;
    if (isHeldMetadata(md)) return false; // held outside the cache (e.g. a registered layer): never pruned
    const lastUsed = md.lastUsedAt;
    if (policy.keepDurationMs && lastUsed !== undefined && lastUsed > now - policy.keepDurationMs) return false;
    return !filter || filter.match(filterAdaptor(usageOfMetadata(md, mutable, false)));
  };
}

/** Streams every stored record once and takes the census for `policy`; sizes are computed where unknown. */
export async function takeCensus(cm: ManagerContext, policy: PrunePolicy, gone: Removed, spaceMode: boolean): Promise<Census> {
  const candidates = new Map<string, Candidate>();
  const children = new Map<string, number>();
  const twins = new Map<string, string>();
  const limit = pLimit(8);
  const matches = matcher(cm, policy);
  let total = 0;
  let newParents: ReadonlySet<string> = new Set();
  const inUse = await cm.mu(() => {
    newParents = watchNewChildrenLocked(cm);
    return inUseSet(cm.records.values());
  });
  const scan = new StoredScan(cm);
  for await (const items of scan) {
    const unsized: Sizing[] = [];
    await scan.visit(items.filter((item) => !gone.has(item.id)), (md, rec, view) => {
      if (rec?.isDead()) return;
      const parent = md.parent;
      if (parent) children.set(parent, (children.get(parent) ?? 0) + 1);
      const twin = md.equalMutable;
      if (twin) twins.set(twin, md.id);
      if (rec ? !isRepresentative(rec) : !view?.representative) return;
      const mutable = rec?.mutable ?? view?.mutable ?? false;
      const counted = spaceMode && !(mutable && (rec ? inUse.has(rec) : view?.held));
      const cand = matches(md, mutable) ? { id: md.id, parent, lastUsedNs: md.lastUsedNs, usageCount: md.usageCount, size: md.size } : undefined;
      if (cand) candidates.set(cand.id, cand);
      if (md.size < 0 && (cand || counted)) {
        if (rec) rec.pins++;
        unsized.push(rec ? { cand, counted, rec } : { cand, counted, md });
      } else if (counted) total += md.size;
    });
    try {
      const sizes = await scan.size(unsized, limit);
      for (const [i, { cand, counted }] of unsized.entries()) {
        if (cand) cand.size = sizes[i]!;
        if (counted) total += sizes[i]!;
      }
    } finally {
      await unpin(cm, unsized.flatMap(({ rec }) => (rec ? [rec] : [])));
      await scan.dropUnsized();
    }
  }
  return { candidates, children, twins, newParents, total };
}
