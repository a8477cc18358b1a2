/**
 * Thin adapters from the `@containerd/leases-ts` services to the snapshot package's interfaces:
 * Snapshotter, ContentStore (with its ContentWriter), LeaseManager, Applier and Differ.
 */
import pLimit from 'p-limit';
import { ErrNotFound } from '@buildcache/errdefs';
import type { Client, ContentWriter as ClientWriter, LeasesService, SnapshotsService } from '@containerd/leases-ts';
import { LABEL_UNCOMPRESSED, compressionOf } from '../labels.js';
import type {
  Applier, ContentInfo, ContentStore, ContentWriter, Descriptor, Differ, IngestStatus, Lease, LeasedOptions,
  LeaseManager, LeaseResource, Mount, SnapshotInfo, Snapshotter, Usage,
} from '../types.js';
import { NO_DEADLINE, compressedDiff } from './compressed-diff.js';

/** `Snapshotter` over containerd's Snapshots service for one snapshotter. */
export class ContainerdSnapshotter implements Snapshotter {
  constructor(private readonly svc: SnapshotsService) {}

  get name(): string {
    return this.svc.name;
  }

  prepare(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]> {
    return this.svc.prepare(key, parent, options);
  }

  view(key: string, parent: string | undefined, options?: LeasedOptions): Promise<Mount[]> {
    return this.svc.view(key, parent, options);
  }

  mounts(key: string): Promise<Mount[]> {
    return this.svc.mounts(key);
  }

  commit(name: string, key: string, options?: LeasedOptions): Promise<void> {
    return this.svc.commit(name, key, options);
  }

  remove(key: string): Promise<void> {
    return this.svc.remove(key);
  }

  stat(key: string): Promise<SnapshotInfo> {
    return this.svc.stat(key);
  }

  update(info: { name: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.svc.update(info, fieldpaths);
  }

  usage(key: string): Promise<Usage> {
    return this.svc.usage(key);
  }

  walk(filters?: readonly string[]): AsyncIterable<SnapshotInfo> {
    return this.svc.list(filters);
  }
}

/** How many lease deletions `deleteMany` has in flight on containerd. */
const LEASE_DELETES_IN_FLIGHT = 16;

/** `LeaseManager` over containerd's Leases service (containerd deletes one lease per call). */
export class ContainerdLeases implements LeaseManager {
  constructor(private readonly svc: LeasesService) {}

  create(id: string, labels?: Readonly<Record<string, string>>): Promise<Lease> {
    return this.svc.create(id, labels);
  }

  delete(id: string, options?: { sync?: boolean }): Promise<void> {
    return this.svc.delete(id, options);
  }

  async deleteMany(ids: readonly string[]): Promise<void> {
    const limit = pLimit(LEASE_DELETES_IN_FLIGHT);
    const results = await Promise.allSettled(
      [...new Set(ids)].map((id) => limit(() => this.svc.delete(id).catch((err: unknown) => {
        if (!(err instanceof ErrNotFound)) throw err;
      }))),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  list(filters?: readonly string[]): Promise<Lease[]> {
    return this.svc.list(filters);
  }

  addResource(id: string, resource: LeaseResource): Promise<void> {
    return this.svc.addResource(id, resource);
  }

  deleteResource(id: string, resource: LeaseResource): Promise<void> {
    return this.svc.deleteResource(id, resource);
  }

  listResources(id: string): Promise<LeaseResource[]> {
    return this.svc.listResources(id);
  }
}

/** A client writer whose commit falls back to the labels given at open. */
class LabelledWriter implements ContentWriter {
  constructor(
    private readonly w: ClientWriter,
    private readonly labels: Readonly<Record<string, string>> | undefined,
  ) {}

  get offset(): number {
    return this.w.offset;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.w.write(chunk);
  }

  commit(options: { size?: number; expected?: string; labels?: Readonly<Record<string, string>> } = {}): Promise<string> {
    const labels = options.labels ?? this.labels;
    return this.w.commit({ ...options, ...(labels ? { labels } : {}) });
  }

  close(): Promise<void> {
    return this.w.close();
  }
}

/** `ContentStore` over containerd's Content service. */
export class ContainerdContentStore implements ContentStore {
  constructor(private readonly client: Client) {}

  info(digest: string): Promise<ContentInfo> {
    return this.client.content.info(digest);
  }

  update(info: { digest: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<ContentInfo> {
    return this.client.content.update(info, fieldpaths);
  }

  walk(filters?: readonly string[]): AsyncIterable<ContentInfo> {
    return this.client.content.list(filters);
  }

  delete(digest: string): Promise<void> {
    return this.client.content.delete(digest);
  }

  /** Streams without a deadline: a reader that stops iterating cancels the call. */
  read(digest: string, range?: { offset?: number; length?: number }): AsyncIterable<Uint8Array> {
    return this.client.content.read(digest, range, NO_DEADLINE);
  }

  /** An ingest without a deadline: `close()` ends it. */
  async writer(ref: string, options: LeasedOptions & { expected?: string; total?: number } = {}): Promise<ContentWriter> {
    const w = await this.client.content.writer(ref, { ...options, ...NO_DEADLINE });
    return new LabelledWriter(w, options.labels);
  }

  status(ref: string): Promise<IngestStatus> {
    return this.client.content.status(ref);
  }

  listStatuses(filters?: readonly string[]): Promise<IngestStatus[]> {
    return this.client.content.listStatuses(filters);
  }

  abort(ref: string): Promise<void> {
    return this.client.content.abort(ref);
  }
}

/**
 * `Applier` over containerd's Diff.Apply (the daemon mounts the mounts itself); no deadline, it runs
 * as long as the layer takes, cancelled by the caller's signal.
 */
export class ContainerdApplier implements Applier {
  constructor(private readonly client: Client) {}

  apply(desc: Descriptor, mounts: readonly Mount[], options: { signal?: AbortSignal } = {}): Promise<Descriptor> {
    return this.client.diff.apply(desc, mounts, { ...NO_DEADLINE, ...(options.signal ? { signal: options.signal } : {}) });
  }
}

/**
 * `Differ` over containerd's Diff.Diff (no deadline, the caller's signal); compressed results get the
 * `containerd.io/uncompressed` annotation. zstd, which containerd before 2.1 cannot produce, is
 * compressed in this process from the daemon's uncompressed diff.
 */
export class ContainerdDiffer implements Differ {
  constructor(private readonly client: Client) {}

  async compare(
    lower: readonly Mount[],
    upper: readonly Mount[],
    options: LeasedOptions & { mediaType?: string; ref?: string; signal?: AbortSignal } = {},
  ): Promise<Descriptor> {
    if (options.mediaType && compressionOf(options.mediaType) === 'zstd') return compressedDiff(this.client, lower, upper, 'zstd', options);
    const desc = await this.client.diff.diff(lower, upper, { ...options, ...NO_DEADLINE });
    if (desc.annotations?.[LABEL_UNCOMPRESSED] || compressionOf(desc.mediaType) === 'uncompressed') return desc;
    const uncompressed = (await this.client.content.info(desc.digest, options.lease ? { lease: options.lease } : {})).labels[LABEL_UNCOMPRESSED];
    if (!uncompressed || uncompressed === desc.digest) return desc;
    return { ...desc, annotations: { ...(desc.annotations ?? {}), [LABEL_UNCOMPRESSED]: uncompressed } };
  }
}
