/**
 * Records that gained a child while a prune runs. A prune's census counts each record's children
 * from the store; a child made after the census began is not counted, and once it leaves memory
 * (residency.ts) nothing in memory holds its parent either, so the parent would look free. Record
 * creation notes the parent here; the prune's batches leave a noted record (its next pass's census
 * counts the child).
 */
import type { ManagerContext } from './context.js';

/** The parents noted since the running prune's current census began, by manager (none: no prune running). */
const watched = new WeakMap<ManagerContext, Set<string>>();

/**
 * Starts noting new children's parents afresh for a census (the caller holds the manager lock, so
 * a record made after this is noted, and one made before is in the store the census reads).
 */
export function watchNewChildrenLocked(cm: ManagerContext): ReadonlySet<string> {
  const parents = new Set<string>();
  watched.set(cm, parents);
  return parents;
}

/** Stops noting (the prune is over). */
export function stopWatchingNewChildren(cm: ManagerContext): void {
  watched.delete(cm);
}

/** Notes that a record was just made on top of `parent`, if a prune runs (the caller holds the manager lock). */
export function noteNewChildLocked(cm: ManagerContext, parent: string | undefined): void {
  if (parent !== undefined) watched.get(cm)?.add(parent);
}
