/** The Diff service: apply a layer blob onto mounts, or store the difference of two mount sets. */
import { checkLabels } from './errors.js';
import type { CallContext } from './errors.js';
import { fromDate, fromDescriptor, fromMounts, toDescriptor } from './convert.js';
import type { WireDescriptor } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, Descriptor, Labels, Mount } from './types.js';

/** Options of `DiffService.apply`. */
export interface ApplyOptions extends CallOptions {
  /** Payloads for stream processors (e.g. decryption), as `google.protobuf.Any`. */
  readonly payloads?: Readonly<Record<string, { type_url: string; value: Uint8Array }>>;
  /** Sync the filesystem after applying (1.7.14+; older daemons ignore it). */
  readonly syncFs?: boolean;
}

/** Options of `DiffService.diff`. */
export interface DiffOptions extends CallOptions {
  /** Layer media type: `''` (gzip, the default), `…tar` or `…tar+gzip`; zstd needs containerd 2.1+. */
  readonly mediaType?: string;
  /** Ingest ref of the written blob (random when omitted). */
  readonly ref?: string;
  /** Labels stored on the written blob. */
  readonly labels?: Labels;
  /** Clamp file times to this (1.7+; older daemons ignore it). */
  readonly sourceDateEpoch?: Date;
}

/** Typed wrapper of containerd.services.diff.v1.Diff (the daemon mounts the mounts itself). */
export class DiffService {
  constructor(private readonly scope: Scope) {}

  /**
   * Extracts layer `desc` (read from this namespace's content store) onto `mounts`; returns the
   * applied descriptor, whose digest is the diffID. A failed apply is not rolled back: discard the
   * snapshot.
   */
  async apply(desc: Descriptor, mounts: readonly Mount[], options: ApplyOptions = {}): Promise<Descriptor> {
    const ctx: CallContext = { method: 'Diff/Apply', digest: desc.digest };
    const req = {
      diff: fromDescriptor(desc),
      mounts: fromMounts(mounts),
      payloads: { ...(options.payloads ?? {}) },
      sync_fs: options.syncFs ?? false,
    };
    const res = await this.scope.unary<{ applied: WireDescriptor | null }>('diff', 'Apply', req, ctx, options);
    return toDescriptor(res.applied, ctx);
  }

  /**
   * Writes the changes from `left` (lower, e.g. a view of the parent; [] for none) to `right`
   * (upper) as a layer blob and returns its descriptor. Send a lease to keep the blob.
   */
  async diff(left: readonly Mount[], right: readonly Mount[], options: DiffOptions = {}): Promise<Descriptor> {
    const ctx: CallContext = { method: 'Diff/Diff', ...(options.ref ? { ref: options.ref } : {}) };
    checkLabels(options.labels, ctx);
    const req = {
      left: fromMounts(left),
      right: fromMounts(right),
      media_type: options.mediaType ?? '',
      ref: options.ref ?? '',
      labels: { ...(options.labels ?? {}) },
      source_date_epoch: options.sourceDateEpoch ? fromDate(options.sourceDateEpoch) : null,
    };
    const res = await this.scope.unary<{ diff: WireDescriptor | null }>('diff', 'Diff', req, ctx, options);
    return toDescriptor(res.diff, ctx);
  }
}
