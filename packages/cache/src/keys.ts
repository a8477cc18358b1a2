/**
 * The cache-key store of a build frontend (BuildKit's solver cache): result keys — an operation's
 * key with the keys (or content checksums) of the inputs it consumed — map to the records that hold
 * the operation's results. Keys live in the metadata of the record they name, so a key and its
 * record are written in one atomic commit (no key without its record, no record held by a key that
 * was lost), and deleting a record — by prune or otherwise — drops its keys with it.
 */
import { createHash } from 'node:crypto';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import type { DescHandlers, ManagerContext } from './context.js';
import { checkDigest } from './ids.js';
import { loadRecordLocked } from './load.js';
import type { RecordType } from './record-metadata.js';
import { RECORD_TYPES } from './record-metadata.js';
import type { ImmutableRef } from './refs.js';
import type { RefOptions } from './manager.js';

/** Index under which a record is found by one of its result keys. */
export const INDEX_CACHE_KEY = 'cachekey:';
/** Metadata key prefix of the result keys a record holds (one value per key). */
const KEY_PREFIX = 'cachekey.';

/** What a record keeps of one result key: the operation and inputs it was computed from. */
export interface CacheKeyInfo {
  /** The result key (see `resultKey`). */
  readonly key: string;
  readonly opKey: string;
  readonly inputs: readonly string[];
  /** When the key was recorded, in milliseconds since the epoch. */
  readonly createdAt: number;
}

/** Options of `CacheKeys.record`. */
export interface RecordKeyOptions {
  /** Sets the record's description (e.g. the instruction text) when given. */
  readonly description?: string;
  /** Sets the record's type (e.g. `frontend`, `exec.cachemount`) when given. */
  readonly recordType?: RecordType;
  /** Providers of a lazy record's blobs (a result imported from a remote cache). */
  readonly descHandlers?: DescHandlers;
}

/**
 * The result key of operation `opKey` applied to `inputs` (positional): a sha256 digest that
 * later operations take as one of their inputs, as BuildKit's solver chains its cache keys.
 */
export function resultKey(opKey: string, inputs: readonly string[]): string {
  checkDigest(opKey, 'op key');
  if (!Array.isArray(inputs)) throw new ErrInvalidArgument('inputs must be an array of sha256 digests');
  inputs.forEach((d, i) => checkDigest(d, `input ${i}`));
  const h = createHash('sha256').update('buildcache.cachekey.v1\n').update(opKey);
  for (const d of inputs) h.update('\n').update(d);
  return `sha256:${h.digest('hex')}`;
}

/** The part of the cache manager the key store uses. */
export interface KeyHost {
  readonly context: ManagerContext;
  get(id: string, opts?: RefOptions): Promise<ImmutableRef>;
  search(index: string): Promise<string[]>;
}

/**
 * Result keys over one cache manager (`cache.keys`). Records named by keys are retained records,
 * not in use: `du` shows them reclaimable, prune deletes them (and so their keys) by its usual
 * rules — without `all`, records of type `internal` and `frontend` stay, as in BuildKit.
 */
export class CacheKeys {
  constructor(private readonly host: KeyHost) {}

  /**
   * Records that `opKey` over `inputs` produced record `recordId` (immutable; a mutable record
   * without handles is committed first, as `get` does). The record is finalized, marked retained
   * and given `options`' description and type, in the same commit as the key. Returns the result
   * key. Throws ErrNotFound for an unknown record, ErrInvalidArgument for bad digests.
   */
  async record(opKey: string, inputs: readonly string[], recordId: string, options: RecordKeyOptions = {}): Promise<string> {
    const key = resultKey(opKey, inputs);
    if (options.recordType !== undefined && !RECORD_TYPES.includes(options.recordType)) {
      throw new ErrInvalidArgument(`unknown record type ${JSON.stringify(options.recordType)}; use one of ${RECORD_TYPES.join(', ')}`);
    }
    const ref = await this.host.get(recordId, { noUpdateLastUsed: true, ...(options.descHandlers ? { descHandlers: options.descHandlers } : {}) });
    try {
      // One record for the data (no mutable twin), so that du and prune see the type and keys set here.
      await ref.finalize();
      const rec = ref.record; // held by `ref`: not deleted meanwhile
      await rec.lock(async () => {
        const md = rec.md;
        const info: CacheKeyInfo = { key, opKey, inputs: [...inputs], createdAt: rec.cm.now() };
        md.item.set(KEY_PREFIX + key, info, { index: INDEX_CACHE_KEY + key });
        md.retain = true;
        if (options.description !== undefined) md.description = options.description;
        if (options.recordType !== undefined) md.recordType = options.recordType;
        await md.commit();
      });
    } finally {
      await ref.release();
    }
    this.host.context.changed();
    return key;
  }

  /**
   * A new handle on a record that `opKey` over `inputs` produced (release it when done), or
   * undefined when none is cached (never recorded, or its record was pruned).
   */
  async lookup(opKey: string, inputs: readonly string[], options: RefOptions = {}): Promise<ImmutableRef | undefined> {
    const key = resultKey(opKey, inputs);
    for (const id of await this.host.search(INDEX_CACHE_KEY + key)) {
      try {
        return await this.host.get(id, options);
      } catch (err) {
        if (!(err instanceof ErrNotFound)) throw err; // deleted meanwhile: try the next one
      }
    }
    return undefined;
  }

  /** The result keys record `recordId` holds (empty for an unknown record). */
  async keysOf(recordId: string): Promise<CacheKeyInfo[]> {
    const cm = this.host.context;
    return cm.mu(async () => {
      let md;
      try {
        md = (await loadRecordLocked(cm, recordId)).md;
      } catch (err) {
        if (err instanceof ErrNotFound) return [];
        throw err;
      }
      return md.item
        .keys()
        .filter((k) => k.startsWith(KEY_PREFIX))
        .map((k) => md.item.get<CacheKeyInfo>(k)!);
    });
  }

  /**
   * Deletes the key of `opKey` over `inputs` from every record holding it. A record left with no
   * key stays an ordinary (finalized, reclaimable) record until prune takes it, as BuildKit's
   * solver Release drops keys and leaves the ref to the cache manager. Returns how many records held the key.
   */
  async remove(opKey: string, inputs: readonly string[]): Promise<number> {
    const key = resultKey(opKey, inputs);
    const cm = this.host.context;
    let n = 0;
    for (const id of await this.host.search(INDEX_CACHE_KEY + key)) {
      await cm.mu(async () => {
        let rec;
        try {
          rec = await loadRecordLocked(cm, id);
        } catch (err) {
          if (err instanceof ErrNotFound) return;
          throw err;
        }
        await rec.lock(async () => {
          const item = rec.md.item;
          if (!item.has(KEY_PREFIX + key)) return;
          item.delete(KEY_PREFIX + key);
          await rec.md.commit();
          n++;
        });
      });
    }
    if (n > 0) cm.changed();
    return n;
  }
}
