/**
 * The cache manager: opens the record store over a backend, and hands out refs — new mutable
 * layers, immutable layers by ID, by content (blob and chain IDs) or by index.
 */
import { recordsCreated } from './metrics.js';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { ErrClosed, ErrInUse, ErrInvalidArgument, ErrNeedsRemoteProvider, ErrNotFound } from '@buildcache/errdefs';
import { MetadataStore } from '@buildcache/metadata';
import { LABEL_UNCOMPRESSED, msToNs, nowNs, strictlyIncreasing, type Backend, type Descriptor } from '@buildcache/snapshot';
import { NO_HANDLERS, type DescHandlers, type ManagerContext } from './context.js';
import { DeferredCommits } from './deferred.js';
import { GCDebt } from './gc-debt.js';
import { CacheRecord } from './records.js';
import { RECORD_TYPES, RecordMetadata, INDEX_BLOB_CHAIN_ID, INDEX_CHAIN_ID, type RecordType } from './record-metadata.js';
import { ImmutableRef, MutableRef } from './refs.js';
import { commitMutableLocked, reserveTwinId } from './lifecycle.js';
import { loadRecordLocked } from './load.js';
import { searchLocked } from './search.js';
import { noteNewChildLocked } from './new-children.js';
import { markClosed, repairOnOpen } from './repair.js';
import { deleteRecordsLocked } from './deletion.js';
import { loadOwner, ownedBackend } from './owner.js';
import { lockedThenSweep } from './residency.js';
import { serialLock } from './serial.js';
import { ensureFlatLease, deleteLease } from './leases.js';
import { newRecordId, chainID, blobChainID } from './ids.js';
import { diffIDOf } from './blobs.js';
import { checkProviders } from './lazy.js';
import { diskUsage, type DiskUsageOptions } from './du.js';
import { prune, diskStatOf, type PrunePolicy, type PruneOptions, type PruneResult } from './prune.js';
import { defaultGCPolicy, GCScheduler, type GCOptions } from './gc.js';
import type { UsageInfo } from './usage.js';
import { CacheKeys } from './keys.js';

/** Options of `CacheManager.open`. */
export interface CacheManagerOptions {
  /** Directory for the manager's own metadata (`<root>/metadata`). */
  readonly root: string;
  readonly backend: Backend;
  readonly logger?: Logger;
  /** Clock in milliseconds since the epoch (tests inject one). */
  readonly now?: () => number;
  /** Automatic garbage collection; off unless given (`{}` uses BuildKit's default policies). */
  readonly gc?: GCOptions;
}

/** Options of calls that create or take refs. */
export interface RefOptions {
  readonly description?: string;
  readonly recordType?: RecordType;
  /** Keep the record when its last handle goes, even if never finalized. */
  readonly retain?: boolean;
  /** Do not stamp last-used time and usage count when this handle is released. */
  readonly noUpdateLastUsed?: boolean;
  /** An image this layer belongs to (kept as a set on the record). */
  readonly imageRef?: string;
  /** Providers for lazy blobs, by digest. */
  readonly descHandlers?: DescHandlers;
}

function checkOptions(opts: RefOptions): void {
  if (opts.recordType !== undefined && !RECORD_TYPES.includes(opts.recordType)) {
    throw new ErrInvalidArgument(`unknown record type ${JSON.stringify(opts.recordType)}; use one of ${RECORD_TYPES.join(', ')}`);
  }
}

/** Applies creation-time options to a new record's metadata. */
function initMetadata(md: RecordMetadata, now: number, opts: RefOptions): void {
  md.createdAt = now;
  if (opts.description !== undefined) md.description = opts.description;
  if (opts.recordType !== undefined) md.recordType = opts.recordType;
  if (opts.retain) md.retain = true;
  if (opts.imageRef !== undefined) md.addImageRef(opts.imageRef);
}

/** A BuildKit-style cache manager over one backend. */
export class CacheManager {
  #closed = false;
  #gc: GCScheduler | undefined;
  /** Record creations in flight: close() waits for them (one that reaches its metadata after close() undoes itself). */
  readonly #creating = new Set<Promise<unknown>>();
  #keys: CacheKeys | undefined;

  private constructor(
    private readonly cm: ManagerContext,
    private readonly root: string,
    private readonly deferred: DeferredCommits,
  ) {}

  /** Opens (or creates) the cache at `root` and repairs what a crash left; records load on first use. */
  static async open(options: CacheManagerOptions): Promise<CacheManager> {
    const logger = options.logger ?? pino({ level: 'silent' });
    await mkdir(options.root, { recursive: true });
    const store = await MetadataStore.open(join(options.root, 'metadata'), { logger });
    const deferred = new DeferredCommits(logger);
    const clock = options.now;
    let cm: ManagerContext;
    try {
      const owner = await loadOwner(store);
      cm = {
        backend: ownedBackend(options.backend, owner),
        owner,
        store,
        logger,
        mu: serialLock(),
        records: new Map(),
        now: clock ?? Date.now,
        nowNs: clock ? strictlyIncreasing(() => msToNs(clock())) : nowNs,
        changed: () => undefined,
        deferCommit: (md) => deferred.add(md),
        gcDebt: new GCDebt(store),
        purging: new Set(),
      };
      await cm.mu(() => repairOnOpen(cm));
    } catch (err) {
      await store.close();
      throw err;
    }
    const manager = new CacheManager(cm, options.root, deferred);
    cm.changed = () => manager.poke();
    if (options.gc) manager.startGC(options.gc);
    return manager;
  }

  private startGC(options: GCOptions): void {
    const collect = async (): Promise<void> => {
      const policies = options.policies ?? defaultGCPolicy(await diskStatOf(this.root));
      const result = await this.prune(policies);
      if (result.deleted > 0) this.cm.logger.info(result, 'automatic garbage collection');
    };
    this.#gc = new GCScheduler(collect, this.cm.logger, options.throttleMs, options.intervalMs);
  }

  /** Tells automatic GC that the cache changed. */
  private poke(): void {
    this.#gc?.poke();
  }

  /** Usage of every record (one entry per data), streamed; unknown sizes are computed on the way. */
  diskUsage(options: DiskUsageOptions = {}): AsyncGenerator<UsageInfo> {
    return diskUsage(this.check(), options);
  }

  /** Deletes unused records by `policies` (one prune at a time), then collects garbage in the backend. */
  prune(policies: readonly PrunePolicy[] = [{}], options: PruneOptions = {}): Promise<PruneResult> {
    return prune(this.check(), policies, { root: this.root, ...options });
  }

  /** The cache-key store of build frontends over this cache: result keys → records (keys.ts). */
  get keys(): CacheKeys {
    return (this.#keys ??= new CacheKeys(this));
  }

  /** @internal Shared state, for du/prune in this package. */
  get context(): ManagerContext {
    return this.cm;
  }

  private check(): ManagerContext {
    if (this.#closed) throw new ErrClosed('the cache manager is closed');
    return this.cm;
  }

  /** An immutable ref on record `id`; a mutable record without handles is committed (or its equal returned). */
  async get(id: string, opts: RefOptions = {}): Promise<ImmutableRef> {
    const cm = this.check();
    const handlers = opts.descHandlers ?? NO_HANDLERS;
    const ref = await lockedThenSweep(cm, async () => {
      const rec = await loadRecordLocked(cm, id);
      if (!rec.mutable) return new ImmutableRef(rec, !opts.noUpdateLastUsed, handlers);
      return rec.lock(async () => {
        if (rec.refs.size > 0) {
          throw new ErrInUse(`record ${id} is mutable and in use; release its mutable ref first`, { details: { id } });
        }
        const imm = rec.equalImmutable ?? (await commitMutableLocked(rec, undefined));
        return new ImmutableRef(imm, !opts.noUpdateLastUsed, handlers);
      });
    });
    try {
      await checkProviders(ref.record, handlers);
    } catch (err) {
      await ref.release();
      throw err;
    }
    return ref;
  }

  /** Tracks a record creation, so that close() waits for it. */
  private creating<T>(op: Promise<T>): Promise<T> {
    this.#creating.add(op);
    const done = (): void => {
      this.#creating.delete(op);
    };
    void op.then(done, done);
    return op;
  }

  /** Refuses to write a new record's metadata once close() has begun (the caller then undoes its leases). */
  private checkStillOpen(): void {
    if (this.#closed) throw new ErrClosed('the cache manager was closed while a record was being created');
  }

  /** A new mutable layer on top of `parent` (finalized and extracted first). */
  async new(parent?: ImmutableRef, opts: RefOptions = {}): Promise<MutableRef> {
    const cm = this.check();
    checkOptions(opts);
    const ref = await this.creating(this.newRecord(cm, parent, opts));
    recordsCreated.inc({ kind: 'mutable' });
    return ref;
  }

  private async newRecord(cm: ManagerContext, parent: ImmutableRef | undefined, opts: RefOptions): Promise<MutableRef> {
    const parentRef = parent?.clone();
    try {
      if (parentRef) {
        await parentRef.finalize();
        await parentRef.extract();
      }
      const id = newRecordId();
      const { leases, snapshotter } = cm.backend;
      await ensureFlatLease(leases, id, id);
      let md: RecordMetadata;
      try {
        await snapshotter.prepare(id, parentRef?.record.md.snapshotID, { lease: id });
        this.checkStillOpen();
        md = new RecordMetadata(await cm.store.get(id));
        initMetadata(md, cm.now(), opts);
        md.committed = false;
        md.snapshotID = id;
        md.parent = parentRef?.id;
        md.equalImmutable = newRecordId();
        await md.commit();
      } catch (err) {
        await cm.gcDebt.owe().then(() => deleteLease(leases, id)).catch(() => undefined);
        throw err;
      }
      const rec = new CacheRecord(cm, md, true);
      rec.parent = parentRef;
      const ref = await lockedThenSweep(cm, () => {
        cm.records.set(id, rec);
        noteNewChildLocked(cm, md.parent);
        return new MutableRef(rec, !opts.noUpdateLastUsed, opts.descHandlers ?? NO_HANDLERS);
      });
      cm.changed();
      return ref;
    } catch (err) {
      await parentRef?.release();
      throw err;
    }
  }

  /** Reopens mutable record `id` (dropping its committed equal); fails if either is in use. */
  async getMutable(id: string, opts: RefOptions = {}): Promise<MutableRef> {
    const cm = this.check();
    return lockedThenSweep(cm, async () => {
      const rec = await loadRecordLocked(cm, id);
      if (!rec.mutable) {
        throw new ErrInvalidArgument(`record ${id} is immutable; use get() or new(parent)`, { details: { id } });
      }
      return rec.lock(async () => {
        if (rec.refs.size > 0) throw new ErrInUse(`mutable record ${id} is in use`, { details: { id } });
        const imm = rec.equalImmutable;
        if (imm) {
          if (imm.refs.size > 0) {
            throw new ErrInUse(`mutable record ${id} is in use through its committed record ${imm.id}`, { details: { id } });
          }
          rec.equalImmutable = undefined;
          imm.equalMutable = undefined;
          await deleteRecordsLocked(cm, [imm]);
          await reserveTwinId(rec);
        }
        return new MutableRef(rec, !opts.noUpdateLastUsed, opts.descHandlers ?? NO_HANDLERS);
      });
    });
  }

  /**
   * Marks record `id` held (or no longer held) by `holder`, something outside the cache that keeps
   * the record's ID (e.g. the layer store). A held record is in use for `du` and never pruned.
   * Durable when it resolves; ErrNotFound when the record does not exist.
   */
  async setHeld(id: string, holder: string, held: boolean): Promise<void> {
    const cm = this.check();
    await cm.mu(async () => {
      const rec = await loadRecordLocked(cm, id);
      await rec.lock(async () => {
        const holders = rec.md.holders.filter((h) => h !== holder);
        rec.md.holders = held ? [...holders, holder] : holders;
        await rec.md.commit();
      });
    });
    cm.changed();
  }

  /**
   * An immutable (possibly lazy) record for layer blob `desc` on top of `parent`: an existing one
   * with the same blob chain, else a new one that reuses a snapshot with the same chainID.
   */
  async getByBlob(desc: Descriptor, parent?: ImmutableRef, opts: RefOptions = {}): Promise<ImmutableRef> {
    const cm = this.check();
    checkOptions(opts);
    return this.creating(this.byBlob(cm, desc, parent, opts));
  }

  private async byBlob(cm: ManagerContext, desc: Descriptor, parent: ImmutableRef | undefined, opts: RefOptions): Promise<ImmutableRef> {
    const diffID = diffIDOf(desc);
    const handlers = opts.descHandlers ?? NO_HANDLERS;
    const parentRef = parent?.clone();
    try {
      if (parentRef) await parentRef.finalize();
      const p = parentRef?.record.md;
      if (p && (!p.chainID || !p.blobChainID)) {
        throw new ErrInvalidArgument(`parent ${p.id} has no blob chain; call getRemote() on it first`, { details: { id: p.id } });
      }
      const chain = chainID(p?.chainID, diffID);
      const blobChain = blobChainID(p?.blobChainID, desc.digest, diffID);
      const { content, leases } = cm.backend;
      const stored = await content.info(desc.digest).then(() => true, (e: unknown) => {
        if (e instanceof ErrNotFound) return false;
        throw e;
      });
      if (!stored && !handlers.has(desc.digest)) {
        throw new ErrNeedsRemoteProvider(`blob ${desc.digest} is not in the content store and no provider was given`, {
          details: { digest: desc.digest },
        });
      }
      return await lockedThenSweep(cm, async () => {
        for (const id of await searchLocked(cm, INDEX_BLOB_CHAIN_ID + blobChain, false)) {
          const rec = await loadRecordLocked(cm, id);
          if (rec.mutable || rec.isDead()) continue;
          if (opts.imageRef) {
            rec.md.addImageRef(opts.imageRef);
            await rec.md.commit();
          }
          await parentRef?.releaseLocked();
          return new ImmutableRef(rec, !opts.noUpdateLastUsed, handlers);
        }
        let link: CacheRecord | undefined;
        for (const id of await searchLocked(cm, INDEX_CHAIN_ID + chain, false)) {
          const rec = await loadRecordLocked(cm, id).catch(() => undefined);
          if (rec && !rec.isDead() && !rec.md.blobOnly && !rec.equalMutable) link = rec;
          if (link) break;
        }
        const id = newRecordId();
        const snapshotID = link?.md.snapshotID ?? chain;
        await ensureFlatLease(leases, id, id);
        await leases.addResource(id, { type: `snapshots/${cm.backend.snapshotter.name}`, id: snapshotID });
        await leases.addResource(id, { type: 'content', id: desc.digest });
        const md = new RecordMetadata(await cm.store.get(id));
        initMetadata(md, cm.now(), opts);
        md.committed = true;
        md.parent = parentRef?.id;
        md.snapshotID = snapshotID;
        md.diffID = diffID;
        md.blob = desc.digest;
        md.mediaType = desc.mediaType;
        md.blobSize = desc.size;
        md.urls = desc.urls ?? [];
        const { [LABEL_UNCOMPRESSED]: _diffID, ...annotations } = desc.annotations ?? {};
        md.annotations = annotations;
        md.chainID = chain;
        md.blobChainID = blobChain;
        md.blobOnly = true;
        await md.commit();
        const rec = new CacheRecord(cm, md, false);
        rec.parent = parentRef;
        cm.records.set(id, rec);
        noteNewChildLocked(cm, md.parent);
        recordsCreated.inc({ kind: 'blob' });
        return new ImmutableRef(rec, !opts.noUpdateLastUsed, handlers);
      });
    } catch (err) {
      if (parentRef && !parentRef.released) await parentRef.release();
      throw err;
    }
  }

  /** IDs of live records whose index value is `index` (or starts with it, with `prefix`). */
  async search(index: string, opts: { prefix?: boolean } = {}): Promise<string[]> {
    const cm = this.check();
    return lockedThenSweep(cm, () => searchLocked(cm, index, opts.prefix === true));
  }

  /** Closes the metadata store. Refs must not be used afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#creating.size > 0) await Promise.allSettled([...this.#creating]);
    await this.#gc?.stop();
    await this.deferred.flush();
    await this.cm.mu(async () => {
      await markClosed(this.cm);
      await this.cm.store.close();
    });
  }
}
