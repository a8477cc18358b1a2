/**
 * One item (cache record) of a metadata store: its JSON values cached in memory, the changes
 * queued against them, and its external raw values on disk.
 */
import type { Logger } from 'pino';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import type { BatchOp, Db } from './batch-writer.js';
import { externalKey, indexKey, itemExternalRange, validateName, valueKey } from './keys.js';
import { encodeDocument, encodeValue, entryFromEncoded, parseDocument, type DocumentProblem, type Entry } from './values.js';

/** What an item needs from its store. */
export interface ItemHost {
  readonly db: Db;
  readonly logger: Logger;
  /** Throws ErrClosed once the store is closing or closed. */
  assertOpen(): void;
  /** Writes `ops` atomically and durably (group commit); resolves with the store's write number. */
  write(ops: BatchOp[], id: string): Promise<number>;
  /** Registers an operation that `close()` must wait for. */
  track<T>(op: Promise<T>): Promise<T>;
}

/** Options of `StorageItem.set`. */
export interface SetOptions {
  /** Makes the item findable by `MetadataStore.search` under this string (e.g. `chainid:sha256:…`). */
  readonly index?: string | undefined;
}

/** A queued change: the new entry, or null for a deletion. */
type Change = Entry | null;

/** Changes handed to one commit() or clear call. */
interface Stage {
  readonly changes: Map<string, Change>;
  readonly clear: boolean;
}

/** Internal entry point used by `MetadataStore.clear`. */
export const CLEAR = Symbol('clear');
/** Internal accessor of the committed index strings, used by `MetadataStore.search`. */
export const COMMITTED_INDEXES = Symbol('committedIndexes');
/** Internal accessor of the store's write number of the item's last write, used by `MetadataStore.evict`. */
export const WRITTEN_AT = Symbol('writtenAt');

const noop = (): void => {};

/**
 * The values of one item. Reads are synchronous and see queued changes (read your writes);
 * `set`/`delete` only queue; `commit()` writes every queued change, with the index keys they
 * add or remove, as one atomic durable batch. Created by `MetadataStore.get`/`all`/`search`,
 * one object per ID for as long as the store is open.
 */
export class StorageItem {
  /** The item's ID (e.g. the cache record ID). */
  readonly id: string;
  readonly #host: ItemHost;
  /** Entries as they are on disk. */
  #committed: Map<string, Entry>;
  /** Changes handed to commit()/clear calls and not yet on disk, oldest first. */
  #stages: Stage[] = [];
  /** Changes queued since the last commit() call. */
  #pending = new Map<string, Change>();
  /** Serialises this item's writes (commit, clear, externals). */
  #tail: Promise<void> = Promise.resolve();
  /** Writes called and not settled yet. */
  #writing = 0;
  /** The store's write number of this item's last write (0: none since it was loaded). */
  #writtenAt = 0;

  /** @internal Use `MetadataStore.get`. */
  constructor(host: ItemHost, id: string, committed: Map<string, Entry>) {
    this.#host = host;
    this.id = id;
    this.#committed = committed;
  }

  /** The value of `key` (a frozen JSON value), or undefined. `T` is not checked; validate what you read. */
  get<T = unknown>(key: string): T | undefined {
    return this.#lookup(key)?.v as T | undefined;
  }

  /** Whether `key` has a value. */
  has(key: string): boolean {
    return this.#lookup(key) !== undefined;
  }

  /** The index string `key`'s value is findable under, if any. */
  indexOf(key: string): string | undefined {
    return this.#lookup(key)?.i;
  }

  /** Every key that has a value, sorted. */
  keys(): string[] {
    const all = new Set([...this.#committed.keys(), ...this.#pending.keys()]);
    for (const stage of this.#stages) for (const k of stage.changes.keys()) all.add(k);
    return [...all].filter((k) => this.#lookup(k) !== undefined).sort();
  }

  /** Whether changes are queued that no `commit()` call has taken yet. */
  get dirty(): boolean {
    return this.#pending.size > 0;
  }

  /** Whether nothing is queued and no write is in flight (the store may then drop it from memory). */
  get idle(): boolean {
    return this.#pending.size === 0 && this.#writing === 0;
  }

  /**
   * Queues `key = value`. The value must be JSON (null, boolean, finite number, string, array,
   * plain object); it is stored canonically and read back frozen. With `index`, the item is
   * findable under that string; setting a value without `index` drops its old index.
   * Setting what is already committed cancels any queued change of `key`.
   */
  set(key: string, value: unknown, options?: SetOptions): void {
    this.#host.assertOpen();
    validateName('key', key);
    const index = options?.index;
    if (index !== undefined) validateName('index', index);
    const encoded = encodeValue(key, value);
    const base = this.#base(key);
    if (base !== undefined && base.i === index && (base.e ??= encodeValue(key, base.v)) === encoded) {
      this.#pending.delete(key);
      return;
    }
    this.#pending.set(key, entryFromEncoded(encoded, index));
  }

  /** Queues the removal of `key` (and of its index). Deleting a missing key is a no-op. */
  delete(key: string): void {
    this.#host.assertOpen();
    validateName('key', key);
    if (this.#base(key) === undefined) this.#pending.delete(key);
    else this.#pending.set(key, null);
  }

  /** Drops the changes queued since the last commit() call. */
  discard(): void {
    this.#pending.clear();
  }

  /**
   * Writes the changes queued before the call (values, new index keys, removal of stale ones)
   * as one atomic, synchronous batch, merged with concurrent commits of other items (group
   * commit). Resolves once they and every earlier write of this item are durable. Nothing
   * queued → nothing written. On failure the changes are queued again for the next commit.
   */
  async commit(): Promise<void> {
    this.#host.assertOpen();
    const stage = this.#stage(this.#pending, false);
    this.#pending = new Map();
    return this.#host.track(this.#serial(() => this.#commitNow(stage)));
  }

  /** The external raw value of `key`, read from disk (never cached), or undefined. */
  async getExternal(key: string): Promise<Uint8Array | undefined> {
    this.#host.assertOpen();
    validateName('key', key);
    return this.#host.track(
      this.#host.db.get<string, Uint8Array>(externalKey(this.id, key), { valueEncoding: 'view' }),
    );
  }

  /** Stores `bytes` as external value `key`, durably, right away (not queued). The bytes are copied. */
  async setExternal(key: string, bytes: Uint8Array): Promise<void> {
    this.#host.assertOpen();
    validateName('key', key);
    if (!(bytes instanceof Uint8Array)) {
      throw new ErrInvalidArgument(`metadata: external value ${JSON.stringify(key)} must be a Uint8Array`, {
        details: { id: this.id, key },
      });
    }
    const value = bytes.slice();
    const op: BatchOp = { type: 'put', key: externalKey(this.id, key), value, valueEncoding: 'view' };
    return this.#host.track(this.#serial(() => this.#written(this.#host.write([op], this.id))));
  }

  /** Removes external value `key`, durably, right away. */
  async deleteExternal(key: string): Promise<void> {
    this.#host.assertOpen();
    validateName('key', key);
    const op: BatchOp = { type: 'del', key: externalKey(this.id, key) };
    return this.#host.track(this.#serial(() => this.#written(this.#host.write([op], this.id))));
  }

  /**
   * @internal Removes every value, index key and external value of this item: the external values
   * first, inside LevelDB, then the values and index keys as one durable batch (a crash between
   * leaves the item with its values and without some external values; clearing it again finishes).
   * The keys are read from disk, so values that failed to parse go too. Queued changes are dropped.
   */
  [CLEAR](): Promise<void> {
    const keys = new Set([...this.#committed.keys(), ...this.#stages.flatMap((st) => [...st.changes.keys()])]);
    const dropped = this.#pending;
    this.#pending = new Map();
    const stage = this.#stage(new Map([...keys].map((k) => [k, null])), true);
    return this.#serial(async () => {
      const { db, logger } = this.#host;
      try {
        const ops: BatchOp[] = [];
        const indexKeys = new Set<string>();
        for (const index of indexesOf(this.#committed)) indexKeys.add(indexKey(index, this.id));
        const text = await db.get(valueKey(this.id));
        if (text !== undefined) {
          ops.push({ type: 'del', key: valueKey(this.id) });
          const problems: DocumentProblem[] = [];
          for (const entry of parseDocument(text, problems)?.values() ?? []) {
            if (entry.i !== undefined) indexKeys.add(indexKey(entry.i, this.id));
          }
          if (problems.length > 0) logger.warn({ id: this.id, problems }, 'metadata: clearing a malformed values document');
        }
        for (const key of indexKeys) ops.push({ type: 'del', key });
        await db.clear(itemExternalRange(this.id));
        await this.#written(this.#host.write(ops, this.id));
        this.#committed = new Map();
        this.#unstage(stage);
      } catch (err) {
        this.#unstage(stage);
        for (const [k, change] of dropped) if (!this.#pending.has(k)) this.#pending.set(k, change);
        throw err;
      }
    });
  }

  /** Whether `keys()` would be non-empty, without building it (cheap when nothing is queued). */
  hasValues(): boolean {
    if (this.#pending.size === 0 && this.#stages.length === 0) return this.#committed.size > 0;
    return this.keys().length > 0;
  }

  /** @internal The store's write number of this item's last write. */
  [WRITTEN_AT](): number {
    return this.#writtenAt;
  }

  /** @internal The index strings of the committed values. */
  [COMMITTED_INDEXES](): Set<string> {
    return indexesOf(this.#committed);
  }

  /** The entry of `key` once the commits and clears already called land, ignoring queued changes. */
  #base(key: string): Entry | undefined {
    for (let i = this.#stages.length - 1; i >= 0; i--) {
      const change = this.#stages[i]!.changes.get(key);
      if (change !== undefined) return change ?? undefined;
    }
    return this.#committed.get(key);
  }

  #lookup(key: string): Entry | undefined {
    const change = this.#pending.get(key);
    if (change !== undefined) return change ?? undefined;
    return this.#base(key);
  }

  /** Registers changes handed to a commit or clear, so reads see them until they land. */
  #stage(changes: Map<string, Change>, clear: boolean): Stage {
    const stage = { changes, clear };
    if (changes.size > 0 || clear) this.#stages.push(stage);
    return stage;
  }

  #unstage(stage: Stage): void {
    const at = this.#stages.indexOf(stage);
    if (at >= 0) this.#stages.splice(at, 1);
  }

  async #commitNow(stage: Stage): Promise<void> {
    const changes = stage.changes;
    if (changes.size === 0) return;
    const next = new Map(this.#committed);
    for (const [key, change] of changes) {
      if (change === null) next.delete(key);
      else next.set(key, change);
    }
    const ops: BatchOp[] =
      next.size === 0
        ? [{ type: 'del', key: valueKey(this.id) }]
        : [{ type: 'put', key: valueKey(this.id), value: encodeDocument(next) }];
    const before = indexesOf(this.#committed);
    const after = indexesOf(next);
    for (const index of before) if (!after.has(index)) ops.push({ type: 'del', key: indexKey(index, this.id) });
    for (const index of after) if (!before.has(index)) ops.push({ type: 'put', key: indexKey(index, this.id), value: '' });
    try {
      await this.#written(this.#host.write(ops, this.id));
      this.#committed = next;
      this.#unstage(stage);
    } catch (err) {
      this.#unstage(stage);
      this.#requeue(changes);
      throw err;
    }
  }

  /** Hands the changes of a failed commit to the next commit already called, or queues them again. */
  #requeue(changes: Map<string, Change>): void {
    const later = this.#stages[0];
    if (later?.clear === true) return;
    const into = later?.changes ?? this.#pending;
    for (const [k, change] of changes) if (!into.has(k) && !this.#pending.has(k)) into.set(k, change);
  }

  async #written(write: Promise<number>): Promise<void> {
    this.#writtenAt = await write;
  }

  /** Runs `fn` after every earlier write of this item settled. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    this.#writing++;
    const step = async (): Promise<T> => {
      try {
        return await fn();
      } finally {
        this.#writing--;
      }
    };
    const run = this.#tail.then(step, step);
    this.#tail = run.then(noop, noop);
    return run;
  }
}

/** The set of index strings used by `entries`. */
function indexesOf(entries: Map<string, Entry>): Set<string> {
  const out = new Set<string>();
  for (const entry of entries.values()) if (entry.i !== undefined) out.add(entry.i);
  return out;
}
