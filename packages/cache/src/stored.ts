/**
 * One pass of du or prune over the stored records, in record ID order, a batch at a time. A record
 * in memory is seen as it is; one that is not (so has no handle) is told from its metadata when
 * loading it would find nothing to repair — a finalized record, a mutable record whose snapshot
 * exists, and the committed twin of such a mutable record (not representative: as in BuildKit, the
 * mutable one stands for their data) — and loaded otherwise (a record with a blob whose size is
 * unknown is loaded to be sized). A pair is judged once, at whichever of the two comes first; the
 * other's item is kept until the scan reaches it, so each item is read once per pass.
 */
import pLimit, { type LimitFunction } from 'p-limit';
import { ErrNotFound } from '@buildcache/errdefs';
import type { StorageItem } from '@buildcache/metadata';
import type { ManagerContext } from './context.js';
import type { CacheRecord } from './records.js';
import { RecordMetadata, SIZE_UNKNOWN } from './record-metadata.js';
import { STATE_ITEM } from './gc-debt.js';
import { dropPrefetched, loadOrClearLocked, prefetch, snapshotExists } from './load.js';
import { isHeldMetadata } from './usage.js';
import { recordSize } from './size.js';

/** How a stored record that is not in memory is seen, from its metadata alone. */
export interface StoredView {
  readonly mutable: boolean;
  /** False for the committed twin of a mutable record: the mutable one stands for their data. */
  readonly representative: boolean;
  /** Whether something outside the cache holds it or its twin (`setHeld`): in use. */
  readonly held: boolean;
}

/** A record to size (`StoredScan.size`): loaded (`rec`), or told from its metadata (`md`, not in memory). */
export interface Unsized {
  readonly rec?: CacheRecord | undefined;
  readonly md?: RecordMetadata | undefined;
}

/** What the first of a pair decided for the second, with the item it read for that. */
interface Ahead {
  readonly item: StorageItem;
  readonly view: StoredView | undefined;
}

/** How many records du and prune read per step. */
const BATCH = 128;

/** How many metadata or snapshot reads a pass has in flight while judging a batch. */
const READ_AHEAD = 8;

/**
 * Whether a scanned item has been emptied since the scan read it: its record was deleted to the
 * end (the metadata clear is the deletion's last step), so nothing is left to report or delete.
 */
const cleared = (item: StorageItem): boolean => !item.hasValues();

/**
 * A finalized immutable record of known size, or whose size is its snapshot's usage alone (no blob;
 * see `#sizeStored`): nothing to repair.
 */
export function settledView(md: RecordMetadata): StoredView | undefined {
  const finalized = md.exists && !md.deleted && md.committed && md.equalMutable === undefined;
  const settled = finalized && (md.size !== SIZE_UNKNOWN || (!md.blobOnly && md.blob === undefined));
  return settled ? { mutable: false, representative: true, held: isHeldMetadata(md) } : undefined;
}

/** One du or prune pass over the stored records: iterate it for batches, `visit` each. */
export class StoredScan implements AsyncIterable<StorageItem[]> {
  /** Views decided for records ahead in the scan by their twin, by ID. */
  readonly #ahead = new Map<string, Promise<Ahead>>();
  /** Twin items read again (their own visit was earlier), evicted after the batch. */
  #reread: string[] = [];
  /** Items visited from metadata with their size unknown: kept in memory until `size` or `dropUnsized`. */
  readonly #unsized = new Set<StorageItem>();

  constructor(private readonly cm: ManagerContext) {}

  /** The stored records' items in record ID order, `BATCH` at a time (the manager's own state left out). */
  async *[Symbol.asyncIterator](): AsyncGenerator<StorageItem[]> {
    try {
      let items: StorageItem[] = [];
      for await (const item of this.cm.store.all()) {
        if (item.id === STATE_ITEM) continue;
        items.push(item);
        if (items.length < BATCH) continue;
        yield items;
        items = [];
      }
      if (items.length > 0) yield items;
    } finally {
      // A pass that stopped early lets go of the twins it read ahead.
      const left = await Promise.all([...this.#ahead.values()].map((a) => a.catch(() => undefined)));
      this.#ahead.clear();
      await this.cm.mu(() => dropPrefetched(this.cm, left.flatMap((a) => (a ? [a.item.id] : []))));
      await this.dropUnsized();
    }
  }

  /**
   * Visits one batch under the manager lock: a record in memory as it is (`view` undefined), one
   * that can be told from its metadata with that view (`rec` undefined; its item leaves memory
   * after the visit), any other loaded first (read ahead outside the lock). Items being purged or
   * cleared meanwhile (a concurrent prune's), or cleared on loading, are skipped.
   */
  async visit(
    items: readonly StorageItem[],
    visit: (md: RecordMetadata, rec: CacheRecord | undefined, view: StoredView | undefined) => void,
  ): Promise<void> {
    const { cm } = this;
    const views = new Map<string, StoredView>();
    const limit = pLimit(READ_AHEAD);
    const judged: Promise<void>[] = [];
    const fresh = items.filter((item) => !cm.records.has(item.id) && !cleared(item));
    for (const item of fresh) {
      const md = new RecordMetadata(item);
      const settled = settledView(md);
      if (settled) views.set(item.id, settled);
      else if (md.exists && !md.deleted && (md.equalMutable !== undefined || !md.committed)) {
        // Started in ID order: the first of a pair in this batch notes its decision before the second starts.
        judged.push(limit(async () => {
          const view = await this.#pairView(item, md);
          if (view) views.set(item.id, view);
        }));
      }
    }
    await Promise.all(judged);
    const toLoad = fresh.filter((item) => !cm.records.has(item.id) && !views.has(item.id));
    const read = await prefetch(cm, toLoad.map((item) => item.id));
    const reread = this.#reread;
    this.#reread = [];
    await cm.mu(async () => {
      for (const item of items) {
        if (cm.purging.has(item.id) || cleared(item)) continue;
        let rec = cm.records.get(item.id);
        if (!rec) {
          const view = views.get(item.id);
          if (view) {
            const md = new RecordMetadata(item);
            visit(md, undefined, view);
            if (md.size === SIZE_UNKNOWN) this.#unsized.add(item);
            else cm.store.evict(item.id);
            continue;
          }
          rec = await loadOrClearLocked(cm, item.id);
        }
        if (rec) visit(rec.md, rec, undefined);
      }
      dropPrefetched(cm, [...read, ...reread]);
    });
  }

  /**
   * Sizes of records visited with their size unknown, in the order given, `limit` computations at
   * a time: a loaded record by `recordSize` (flight control; stored by it), one told from its
   * metadata by its snapshot's usage (see `#sizeStored`). A size that cannot be computed is 0.
   */
  async size(rows: readonly Unsized[], limit: LimitFunction): Promise<number[]> {
    const sizes = new Array<number>(rows.length).fill(0);
    const stored: RecordMetadata[] = [];
    const storedAt: number[] = [];
    const loaded: Promise<void>[] = [];
    for (const [i, row] of rows.entries()) {
      const rec = row.rec;
      if (rec) {
        loaded.push(limit(async () => {
          sizes[i] = await recordSize(rec).catch(() => 0);
        }));
      } else if (row.md) {
        stored.push(row.md);
        storedAt.push(i);
      }
    }
    const fromStore = this.#sizeStored(stored, limit).then((got) => {
      for (const [j, size] of got.entries()) sizes[storedAt[j]!] = size;
    });
    await Promise.all([fromStore, ...loaded]);
    return sizes;
  }

  /**
   * Sizes of records visited from metadata with their size unknown (mutable records, finalized
   * records without a blob): their snapshots' usage, computed outside the manager lock and stored unless the record was loaded
   * meanwhile (its item is then the record's, which sizes itself). Their items leave memory after.
   */
  async #sizeStored(mds: readonly RecordMetadata[], limit: LimitFunction): Promise<number[]> {
    if (mds.length === 0) return [];
    const { cm } = this;
    const sizes = await Promise.all(mds.map((md) => limit(async () => {
      try {
        return (await cm.backend.snapshotter.usage(md.snapshotID)).size;
      } catch (err) {
        if (err instanceof ErrNotFound) return 0;
        cm.logger.debug({ id: md.id, err }, 'could not size a stored record');
        return undefined; // reported as 0, not stored
      }
    })));
    const commits = await cm.mu(async () => {
      const out: Promise<void>[] = [];
      for (const [i, md] of mds.entries()) {
        this.#unsized.delete(md.item);
        const stillOurs = !cm.records.has(md.id) && (await cm.store.get(md.id)) === md.item;
        const size = sizes[i];
        if (size === undefined || !stillOurs || md.size !== SIZE_UNKNOWN || md.deleted) continue;
        md.size = size;
        out.push(md.commit());
      }
      return out;
    });
    try {
      await Promise.all(commits);
    } finally {
      await cm.mu(() => dropPrefetched(cm, mds.map((md) => md.id)));
    }
    return sizes.map((size) => size ?? 0);
  }

  /** Lets go of the items of records visited with their size unknown that were not sized (filtered out). */
  async dropUnsized(): Promise<void> {
    if (this.#unsized.size === 0) return;
    const ids = [...this.#unsized].map((item) => item.id);
    this.#unsized.clear();
    await this.cm.mu(() => dropPrefetched(this.cm, ids));
  }

  /**
   * The view of a mutable record or of a committed record that shares a mutable one's data, or
   * undefined when it must be loaded: its size is unknown, the pair does not match (a crash left
   * it half made or half deleted: loading repairs), or the mutable snapshot is gone (a finalize cut
   * short: loading repairs). A mutable record made before it named its twin is loaded too.
   */
  async #pairView(item: StorageItem, md: RecordMetadata): Promise<StoredView | undefined> {
    const decided = this.#ahead.get(item.id);
    if (decided) {
      this.#ahead.delete(item.id);
      const ahead = await decided;
      if (ahead.item === item) return ahead.view;
    }
    const twinId = md.committed ? md.equalMutable : md.equalImmutable;
    if (twinId === undefined || this.cm.records.has(twinId)) return undefined;
    const pair = this.#judgePair(md, twinId);
    const ahead = twinId > item.id;
    if (ahead) this.#ahead.set(twinId, pair.then(({ twin, theirs }) => ({ item: twin.item, view: theirs })));
    const { twin, mine } = await pair;
    if (!ahead || !twin.exists) {
      // Read again (its own visit was earlier), or a reserved ID no record has: not kept.
      if (ahead) this.#ahead.delete(twinId);
      this.#reread.push(twinId);
    }
    return mine;
  }

  /** Reads `md`'s twin and judges the pair: the views of `md` and of its twin (undefined: load). */
  async #judgePair(md: RecordMetadata, twinId: string): Promise<{ twin: RecordMetadata; mine?: StoredView; theirs?: StoredView }> {
    const twin = new RecordMetadata(await this.cm.store.get(twinId));
    const [m, c] = md.committed ? [twin, md] : [md, twin];
    const alone = !md.committed && !c.exists; // never committed: its reserved twin ID is unused
    const held = isHeldMetadata(m) || (!alone && isHeldMetadata(c));
    const mutableOk = m.exists && !m.deleted && !m.committed;
    if (alone) {
      const ok = mutableOk && (await snapshotExists(this.cm, m.snapshotID));
      return ok ? { twin, mine: { mutable: true, representative: true, held } } : { twin };
    }
    const paired = mutableOk && c.exists && !c.deleted && c.committed && c.equalMutable === m.id && m.equalImmutable === c.id;
    if (!paired || !(await snapshotExists(this.cm, m.snapshotID))) return { twin };
    const mView: StoredView = { mutable: true, representative: true, held };
    const cView: StoredView = { mutable: false, representative: false, held };
    return md.committed ? { twin, mine: cView, theirs: mView } : { twin, mine: mView, theirs: cView };
  }
}
