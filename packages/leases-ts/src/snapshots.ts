/** The Snapshots service, bound to one snapshotter (`overlayfs`, `native`, …). */
import { checkLabels, checkNonEmpty, protocolError, toNumber } from './errors.js';
import type { CallContext } from './errors.js';
import { labelsOf, toDate, toMounts, toNanos } from './convert.js';
import type { WireMount, WireTimestamp } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, Labels, Mount, SnapshotInfo, SnapshotKind, Usage } from './types.js';

interface WireInfo {
  name: string;
  parent: string;
  kind: string;
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  labels: Record<string, string>;
}

const KINDS: Readonly<Record<string, SnapshotKind>> = { VIEW: 'view', ACTIVE: 'active', COMMITTED: 'committed' };

/** Options of Prepare, View and Commit. */
export interface SnapshotCreateOptions extends CallOptions {
  /** Labels of the new snapshot (`containerd.io/gc.*` ones must be non-empty). */
  readonly labels?: Labels;
}

/** Typed wrapper of containerd.services.snapshots.v1.Snapshots for one snapshotter. */
export class SnapshotsService {
  constructor(
    private readonly scope: Scope,
    /** The snapshotter's name, as used in lease resources (`snapshots/<name>`). */
    readonly name: string,
  ) {}

  private ctx(method: string, key?: string): CallContext {
    return { method: `Snapshots/${method}`, snapshotter: this.name, ...(key !== undefined ? { key } : {}) };
  }

  private info(w: WireInfo | null | undefined, ctx: CallContext): SnapshotInfo {
    if (!w) throw protocolError('the daemon sent no snapshot info', ctx);
    const kind = KINDS[w.kind];
    if (!kind) throw protocolError(`unknown snapshot kind ${w.kind}`, ctx, { kind: w.kind });
    return {
      name: w.name,
      ...(w.parent ? { parent: w.parent } : {}),
      kind,
      labels: labelsOf(w.labels),
      createdAt: toDate(w.created_at),
      updatedAt: toDate(w.updated_at),
      createdAtNs: toNanos(w.created_at),
      updatedAtNs: toNanos(w.updated_at),
    };
  }

  /** Creates active snapshot `key` on committed `parent` (none: empty); returns its mounts. */
  async prepare(key: string, parent?: string, options: SnapshotCreateOptions = {}): Promise<Mount[]> {
    return this.create('Prepare', key, parent, options);
  }

  /** Creates read-only view `key` of committed `parent` (none: empty); returns its mounts. */
  async view(key: string, parent?: string, options: SnapshotCreateOptions = {}): Promise<Mount[]> {
    return this.create('View', key, parent, options);
  }

  private async create(m: 'Prepare' | 'View', key: string, parent: string | undefined, options: SnapshotCreateOptions): Promise<Mount[]> {
    const ctx = { ...this.ctx(m, key), ...(parent ? { parent } : {}) };
    checkNonEmpty(key, 'key', ctx);
    checkLabels(options.labels, ctx);
    const req = { snapshotter: this.name, key, parent: parent ?? '', labels: { ...(options.labels ?? {}) } };
    const res = await this.scope.unary<{ mounts: WireMount[] }>('snapshots', m, req, ctx, options);
    return toMounts(res.mounts);
  }

  /** Mounts of an active or view snapshot (a committed one gives ErrFailedPrecondition). */
  async mounts(key: string, options?: CallOptions): Promise<Mount[]> {
    const ctx = this.ctx('Mounts', key);
    checkNonEmpty(key, 'key', ctx);
    const res = await this.scope.unary<{ mounts: WireMount[] }>('snapshots', 'Mounts', { snapshotter: this.name, key }, ctx, options);
    return toMounts(res.mounts);
  }

  /**
   * Turns active `key` into committed `name`; `key` disappears. Only the labels given here are
   * stored (the active snapshot's labels are dropped by containerd).
   */
  async commit(name: string, key: string, options: SnapshotCreateOptions = {}): Promise<void> {
    const ctx = { ...this.ctx('Commit', key), id: name };
    checkNonEmpty(name, 'name', ctx);
    checkNonEmpty(key, 'key', ctx);
    checkLabels(options.labels, ctx);
    const req = { snapshotter: this.name, name, key, labels: { ...(options.labels ?? {}) } };
    await this.scope.unary('snapshots', 'Commit', req, ctx, options);
  }

  /** Removes a snapshot without children (metadata now, disk at the next GC). */
  async remove(key: string, options?: CallOptions): Promise<void> {
    const ctx = this.ctx('Remove', key);
    checkNonEmpty(key, 'key', ctx);
    await this.scope.unary('snapshots', 'Remove', { snapshotter: this.name, key }, ctx, options);
  }

  /** What the snapshotter knows of `key`. */
  async stat(key: string, options?: CallOptions): Promise<SnapshotInfo> {
    const ctx = this.ctx('Stat', key);
    checkNonEmpty(key, 'key', ctx);
    const res = await this.scope.unary<{ info: WireInfo | null }>('snapshots', 'Stat', { snapshotter: this.name, key }, ctx, options);
    return this.info(res.info, ctx);
  }

  /**
   * Changes labels. With `fieldpaths` (`labels.<k>`: set or, when absent from `info.labels`, delete
   * that one label; `labels`: replace all) only those; without, all labels are replaced.
   */
  async update(
    info: { name: string; labels: Labels },
    fieldpaths: readonly string[] = [],
    options?: CallOptions,
  ): Promise<SnapshotInfo> {
    const ctx = this.ctx('Update', info.name);
    checkNonEmpty(info.name, 'name', ctx);
    checkLabels(info.labels, ctx);
    const req = {
      snapshotter: this.name,
      info: { name: info.name, labels: { ...info.labels } },
      update_mask: fieldpaths.length ? { paths: [...fieldpaths] } : null,
    };
    const res = await this.scope.unary<{ info: WireInfo | null }>('snapshots', 'Update', req, ctx, options);
    return this.info(res.info, ctx);
  }

  /** Disk usage of `key`'s own layer. */
  async usage(key: string, options?: CallOptions): Promise<Usage> {
    const ctx = this.ctx('Usage', key);
    checkNonEmpty(key, 'key', ctx);
    const res = await this.scope.unary<{ size: string; inodes: string }>('snapshots', 'Usage', { snapshotter: this.name, key }, ctx, options);
    return { size: toNumber(res.size, 'size', ctx), inodes: toNumber(res.inodes, 'inodes', ctx) };
  }

  /** Every snapshot, or those matching any of `filters` (server stream, batched by the daemon). */
  async *list(filters: readonly string[] = [], options?: CallOptions): AsyncGenerator<SnapshotInfo, void, undefined> {
    const ctx = this.ctx('List');
    const req = { snapshotter: this.name, filters: [...filters] };
    for await (const batch of this.scope.serverStream<{ info: WireInfo[] }>('snapshots', 'List', req, ctx, options)) {
      for (const info of batch.info) yield this.info(info, ctx);
    }
  }

  /** Asks the snapshotter to free unused disk space (containerd 1.6 answers ErrNotImplemented). */
  async cleanup(options?: CallOptions): Promise<void> {
    await this.scope.unary('snapshots', 'Cleanup', { snapshotter: this.name }, this.ctx('Cleanup'), options);
  }
}
