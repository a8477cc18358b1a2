/**
 * The metadata store: items of JSON values in one LevelDB database, written through group
 * commit, with secondary indexes and external raw values. See README.md for the key layout.
 */
import { resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { ErrClosed, ErrUnknown } from '@buildcache/errdefs';
import { BatchWriter, type BatchOp, type Db, type WriteStats } from './batch-writer.js';
import { ALL_VALUES_RANGE, parseValueKey, validateName, valueKey } from './keys.js';
import { openDatabase } from './open.js';
import { readIndex } from './ranges.js';
import { CLEAR, COMMITTED_INDEXES, StorageItem, WRITTEN_AT, type ItemHost } from './storage-item.js';
import { parseDocument, type DocumentProblem, type Entry } from './values.js';

/** Options of `MetadataStore.open`. */
export interface MetadataStoreOptions {
  /** Where warnings (malformed keys) and debug events go; silent by default. */
  readonly logger?: Logger | undefined;
  /**
   * Sync (fsync) every batch, so a resolved commit survives power loss and `kill -9`. Default
   * true; turn off only for throwaway stores (a crash may then lose the last commits, still atomically).
   */
  readonly sync?: boolean | undefined;
}

/** Options of `MetadataStore.search`. */
export interface SearchOptions {
  /** Match every index string that starts with the query, not only the exact string. */
  readonly prefix?: boolean | undefined;
}

/** How many LevelDB entries a scan reads per round trip. */
const SCAN_BATCH = 1000;

/** How many items `getMany` reads per LevelDB multi-get. */
const GET_MANY_BATCH = 256;

const noop = (): void => {};

/** An `all()` in progress: items evicted after being written past its snapshot must be read again. */
interface Scan {
  /** The store's write number when its snapshot was taken. */
  readonly startSeq: number;
  /** The last ID it reached. */
  position: string;
  /** IDs ahead of it whose snapshot values are out of date. */
  readonly stale: Set<string>;
  /** IDs ahead of it cleared since its snapshot (evicted empty): skipped without a read. */
  readonly cleared: Set<string>;
}

/** A store of items (cache records) in a LevelDB directory, one process at a time. */
export class MetadataStore {
  /** Absolute path of the store directory. */
  readonly path: string;
  readonly #db: Db;
  readonly #logger: Logger;
  readonly #writer: BatchWriter;
  readonly #host: ItemHost;
  /** Every item in memory; one object per ID until it is evicted. */
  readonly #items = new Map<string, StorageItem>();
  readonly #scans = new Set<Scan>();
  /** Number of the last successful write. */
  #writeSeq = 0;
  readonly #loading = new Map<string, Promise<StorageItem>>();
  readonly #tracked = new Set<Promise<unknown>>();
  #state: 'open' | 'closing' | 'closed' = 'open';
  #itemsLoaded = 0;
  #indexKeysRead = 0;
  #closing: Promise<void> | undefined;

  private constructor(path: string, db: Db, logger: Logger, sync: boolean) {
    this.path = path;
    this.#db = db;
    this.#logger = logger;
    this.#writer = new BatchWriter(db, sync);
    this.#host = {
      db,
      logger,
      assertOpen: () => this.#assertOpen(),
      write: (ops, id) => this.#write(ops, id),
      track: (op) => this.#track(op),
    };
  }

  /**
   * Opens the store at `path`, creating it (with its format marker) when the path is missing or
   * an empty directory. Throws ErrNotAStore for anything else that is not a store and
   * ErrStoreLocked when another process (or another open store in this one) holds it.
   */
  static async open(path: string, options: MetadataStoreOptions = {}): Promise<MetadataStore> {
    const abs = resolve(path);
    const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'metadata' });
    const db = await openDatabase(abs, logger);
    logger.debug({ path: abs }, 'metadata: opened store');
    return new MetadataStore(abs, db, logger, options.sync ?? true);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#state !== 'open';
  }

  /**
   * The item with `id`, its values loaded with one point read (hence async). An ID without
   * values gives an empty item, created in memory only until something is committed to it.
   * The same object is returned for the same ID until `evict(id)` drops it.
   */
  async get(id: string): Promise<StorageItem> {
    this.#assertOpen();
    validateName('ID', id);
    const have = this.#items.get(id);
    if (have !== undefined) return have;
    let loading = this.#loading.get(id);
    if (loading === undefined) {
      loading = this.#track(this.#load(id)).finally(() => this.#loading.delete(id));
      this.#loading.set(id, loading);
    }
    return loading;
  }

  /**
   * The items with `ids`, in that order, as `get` gives them; those not in memory are read
   * `GET_MANY_BATCH` at a time with one LevelDB multi-get each (a long list costs a few reads
   * in turn, not one read each at once).
   */
  async getMany(ids: readonly string[]): Promise<StorageItem[]> {
    this.#assertOpen();
    for (const id of ids) validateName('ID', id);
    const out: StorageItem[] = [];
    for (let i = 0; i < ids.length; i += GET_MANY_BATCH) {
      const chunk = ids.slice(i, i + GET_MANY_BATCH);
      const missing = [...new Set(chunk.filter((id) => !this.#items.has(id) && !this.#loading.has(id)))];
      if (missing.length > 0) {
        const read = this.#track(this.#loadMany(missing));
        for (const [j, id] of missing.entries()) {
          this.#loading.set(id, read.then((items) => items[j]!).finally(() => this.#loading.delete(id)));
        }
      }
      out.push(...(await Promise.all(chunk.map((id) => this.get(id)))));
    }
    return out;
  }

  /**
   * Every item with at least one committed value, in ID order, streamed from one LevelDB
   * snapshot in batches (items in memory are yielded as they are in memory, one evicted after a
   * later write is read again, and one evicted after it was cleared is skipped without a read).
   * Items it reads stay in memory until evicted.
   */
  async *all(): AsyncGenerator<StorageItem, void, undefined> {
    this.#assertOpen();
    const scan: Scan = { startSeq: this.#writeSeq, position: '', stale: new Set(), cleared: new Set() };
    this.#scans.add(scan);
    const it = this.#db.iterator(ALL_VALUES_RANGE);
    const read = (): Promise<[string, string][]> => {
      const rows = this.#scan(() => it.nextv(SCAN_BATCH));
      rows.catch(noop); // Handled when awaited; the consumer may hold us suspended meanwhile.
      return rows;
    };
    let next: Promise<[string, string][]> | undefined = read();
    try {
      while (next !== undefined) {
        const rows: [string, string][] = await next;
        // Read the next batch while this one is parsed and consumed.
        next = rows.length === 0 ? undefined : read();
        for (const [dbKey, text] of rows) {
          const id = parseValueKey(dbKey);
          if (id === undefined) {
            this.#logger.warn({ key: dbKey }, 'metadata: skipping malformed value key');
            continue;
          }
          scan.position = id;
          let item = this.#items.get(id);
          if (item === undefined) {
            const loading = this.#loading.get(id);
            const stale = scan.stale.delete(id);
            if (scan.cleared.delete(id) && loading === undefined) continue;
            if (loading !== undefined) item = await loading;
            else if (stale) item = await this.get(id);
            else item = this.#register(id, this.#parse(id, text));
          }
          if (item.hasValues()) yield item;
        }
      }
    } finally {
      this.#scans.delete(scan);
      if (next !== undefined) await next.catch(noop);
      await it.close();
    }
  }

  /**
   * Drops item `id` from memory unless changes are queued on it or a write is in flight; the
   * next `get(id)` reads it again. Callers must not use an evicted item object any more.
   * Returns whether the item is out of memory now.
   */
  evict(id: string): boolean {
    const item = this.#items.get(id);
    if (item === undefined) return !this.#loading.has(id);
    if (!item.idle) return false;
    this.#items.delete(id);
    const writtenAt = item[WRITTEN_AT]();
    // Idle: its values are the committed ones. One emptied since a scan's snapshot (a record deleted
    // to the end) needs no read when that scan reaches it; any other is read again then.
    const empty = !item.hasValues();
    for (const scan of this.#scans) {
      if (writtenAt <= scan.startSeq || id <= scan.position) continue;
      (empty ? scan.stale : scan.cleared).delete(id);
      (empty ? scan.cleared : scan.stale).add(id);
    }
    return true;
  }

  /** How many items are in memory now. */
  get itemsResident(): number {
    return this.#items.size;
  }

  /** The IDs of every item with committed values, in ID order, read from keys only (nothing is loaded). */
  async *ids(): AsyncGenerator<string, void, undefined> {
    this.#assertOpen();
    const it = this.#db.keys(ALL_VALUES_RANGE);
    try {
      for (;;) {
        const keys = await this.#scan(() => it.nextv(SCAN_BATCH));
        if (keys.length === 0) return;
        for (const dbKey of keys) {
          const id = parseValueKey(dbKey);
          if (id !== undefined) yield id;
        }
      }
    } finally {
      await it.close();
    }
  }

  /**
   * The items findable under `index` (committed state): exactly that string, or with
   * `prefix: true` every index string starting with it. Each item appears once, in index order.
   * Index entries that are malformed or point to no matching value are skipped with a warning.
   */
  async search(index: string, options: SearchOptions = {}): Promise<StorageItem[]> {
    const out: StorageItem[] = [];
    for await (const items of this.searchBatches(index, options)) out.push(...items);
    return out;
  }

  /**
   * `search`'s items, `GET_MANY_BATCH` at a time: a caller that evicts each batch once it has
   * looked at it holds one batch in memory, not every match.
   */
  async *searchBatches(index: string, options: SearchOptions = {}): AsyncGenerator<StorageItem[], void, undefined> {
    this.#assertOpen();
    validateName('index', index);
    const prefix = options.prefix === true;
    const malformed = (key: string): void => this.#logger.warn({ key }, 'metadata: skipping malformed index key');
    const { entries: found, keysRead } = await this.#scan(() => readIndex(this.#db, index, prefix, malformed));
    this.#indexKeysRead += keysRead;
    for (let at = 0; at < found.length; at += GET_MANY_BATCH) {
      const batch = found.slice(at, at + GET_MANY_BATCH);
      const items = await this.getMany(batch.map(({ id }) => id));
      yield items.filter((item, i) => {
        const indexes = item[COMMITTED_INDEXES]();
        const ok = prefix ? [...indexes].some((s) => s.startsWith(index)) : indexes.has(index);
        if (!ok) this.#logger.warn({ id: item.id, index: batch[i]?.index }, 'metadata: index key points to no matching value');
        return ok;
      });
    }
  }

  /**
   * Removes every value, index key and external value of item `id`, after the item's earlier
   * writes: the external values first, then the values and index keys in one atomic, durable
   * batch. The item object stays valid and empty.
   */
  async clear(id: string): Promise<void> {
    this.#assertOpen();
    const item = await this.get(id);
    await this.#track(item[CLEAR]());
  }

  /** Write counters since open: requests, batches (fewer when group commit merged) and operations. */
  stats(): WriteStats {
    return this.#writer.stats();
  }

  /** How many items were read into memory since open (by get, all or search); an item read again after eviction counts again. */
  get itemsLoaded(): number {
    return this.#itemsLoaded;
  }

  /** How many LevelDB keys searches read since open (those past a search's range count too). */
  get indexKeysRead(): number {
    return this.#indexKeysRead;
  }

  /** Waits for operations in flight, then closes the database. Later calls throw ErrClosed. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#state = 'closing';
      while (this.#tracked.size > 0) await Promise.allSettled([...this.#tracked]);
      await this.#writer.idle();
      await this.#db.close();
      this.#state = 'closed';
      this.#logger.debug({ path: this.path }, 'metadata: closed store');
    })();
    return this.#closing;
  }

  async #load(id: string): Promise<StorageItem> {
    const text = await this.#scan(() => this.#db.get(valueKey(id)));
    return this.#register(id, text === undefined ? new Map() : this.#parse(id, text));
  }

  async #loadMany(ids: readonly string[]): Promise<StorageItem[]> {
    const texts = await this.#scan(() => this.#db.getMany(ids.map(valueKey)));
    return ids.map((id, i) => {
      const text = texts[i];
      return this.#register(id, text === undefined ? new Map() : this.#parse(id, text));
    });
  }

  /** The entries of a values document; malformed parts are left out with a warning. */
  #parse(id: string, text: string): Map<string, Entry> {
    const problems: DocumentProblem[] = [];
    const entries = parseDocument(text, problems) ?? new Map<string, Entry>();
    if (problems.length > 0) this.#logger.warn({ id, problems }, 'metadata: skipping malformed values');
    return entries;
  }

  /** The item in memory for `id`, or a new one holding `entries`. */
  #register(id: string, entries: Map<string, Entry>): StorageItem {
    const have = this.#items.get(id);
    if (have !== undefined) return have;
    const item = new StorageItem(this.#host, id, entries);
    this.#items.set(id, item);
    this.#itemsLoaded++;
    return item;
  }

  async #write(ops: BatchOp[], id: string): Promise<number> {
    try {
      await this.#writer.write(ops);
      return ++this.#writeSeq;
    } catch (err) {
      throw this.#dbError(err, `writing item ${id}`, id);
    }
  }

  /** Runs a read, mapping LevelDB errors (e.g. closed while iterating) to typed errors. */
  async #scan<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      throw this.#dbError(err, 'reading');
    }
  }

  #dbError(err: unknown, what: string, id?: string): Error {
    const code = (err as { code?: string }).code;
    const details = id === undefined ? { path: this.path } : { path: this.path, id };
    if (code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_ITERATOR_NOT_OPEN') {
      return new ErrClosed(`metadata: store ${this.path} was closed while ${what}`, { cause: err, details });
    }
    return new ErrUnknown(`metadata: ${what} in store ${this.path} failed: ${(err as Error).message}`, { cause: err, details });
  }

  #assertOpen(): void {
    if (this.#state !== 'open') {
      throw new ErrClosed(`metadata: store ${this.path} is closed`, { details: { path: this.path } });
    }
  }

  #track<T>(op: Promise<T>): Promise<T> {
    this.#tracked.add(op);
    const done = (): void => {
      this.#tracked.delete(op);
    };
    void op.then(done, done);
    return op;
  }
}
