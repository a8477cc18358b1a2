/**
 * Conversions between proto-loader's snake_case wire objects (longs as strings, enums as names)
 * and the client's camelCase values.
 */
import { toNumber } from './errors.js';
import type { CallContext } from './errors.js';
import type { Descriptor, Labels, Mount } from './types.js';

/** A google.protobuf.Timestamp as proto-loader decodes it. */
export interface WireTimestamp {
  seconds?: string | number | null;
  nanos?: number | null;
}

/** containerd.types.Mount on the wire. */
export interface WireMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** containerd.types.Descriptor on the wire. */
export interface WireDescriptor {
  media_type: string;
  digest: string;
  size: string | number;
  annotations: Record<string, string>;
}

/** Seconds of Go's zero time (0001-01-01T00:00:00Z), which containerd sends for "unset". */
const GO_ZERO_SECONDS = -62135596800;

/** Wire timestamp → Date; unset or Go's zero time → `new Date(0)`. */
export function toDate(ts: WireTimestamp | null | undefined): Date {
  if (!ts) return new Date(0);
  const seconds = Number(ts.seconds ?? 0);
  if (!Number.isFinite(seconds) || seconds <= GO_ZERO_SECONDS) return new Date(0);
  return new Date(seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}

/** Wire timestamp → nanoseconds since the epoch; unset or Go's zero time → 0n. */
export function toNanos(ts: WireTimestamp | null | undefined): bigint {
  if (toDate(ts).getTime() === 0) return 0n;
  return BigInt(String(ts!.seconds ?? 0)) * 1_000_000_000n + BigInt(ts!.nanos ?? 0);
}

/** Wire timestamp → Date, or undefined when unset or Go's zero time. */
export function toOptionalDate(ts: WireTimestamp | null | undefined): Date | undefined {
  const d = toDate(ts);
  return d.getTime() === 0 ? undefined : d;
}

/** Date → wire timestamp. */
export function fromDate(date: Date): { seconds: number; nanos: number } {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

/** A copy of a label map (proto-loader maps are plain objects already). */
export function labelsOf(map: Record<string, string> | null | undefined): Labels {
  return { ...(map ?? {}) };
}

/** Wire mounts → client mounts (`target` only when the daemon set one). */
export function toMounts(mounts: readonly WireMount[] | null | undefined): Mount[] {
  return (mounts ?? []).map((m) => ({
    type: m.type,
    source: m.source,
    ...(m.target ? { target: m.target } : {}),
    options: [...(m.options ?? [])],
  }));
}

/** Client mounts → wire mounts. */
export function fromMounts(mounts: readonly Mount[]): WireMount[] {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] }));
}

/** Wire descriptor → client descriptor (size checked). */
export function toDescriptor(d: WireDescriptor | null | undefined, ctx: CallContext): Descriptor {
  if (!d) return { mediaType: '', digest: '', size: 0, annotations: {} };
  return {
    mediaType: d.media_type,
    digest: d.digest,
    size: toNumber(d.size, 'size', ctx),
    annotations: labelsOf(d.annotations),
  };
}

/** Client descriptor → wire descriptor. */
export function fromDescriptor(d: Descriptor): WireDescriptor {
  return { media_type: d.mediaType, digest: d.digest, size: d.size, annotations: { ...(d.annotations ?? {}) } };
}
