/**
 * Wire ↔ API conversions: usage entries and prune policies as BuildKit's control API and buildcache's
 * own API carry them, with the checks a request needs (int64 range, no negative sizes or durations).
 */
import type { PrunePolicy, RecordType, UsageInfo } from '@buildcache/cache';
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** An int64 as proto-loader hands it over (`longs: String`). */
type Int64 = string | number;

/** A non-negative int64 from a request as a safe JS number; `field` names it in the error. */
export function requestInt(value: Int64 | undefined, field: string): number {
  let n: bigint;
  try {
    n = BigInt(value ?? 0);
  } catch {
    throw new ErrInvalidArgument(`${field} must be an integer (got ${JSON.stringify(value)})`, { details: { field } });
  }
  if (n < 0n) throw new ErrInvalidArgument(`${field} must not be negative (got ${n})`, { details: { field } });
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ErrInvalidArgument(`${field} ${n} is too large (at most ${Number.MAX_SAFE_INTEGER})`, { details: { field } });
  }
  return Number(n);
}

/** A value from a reply (trusted to be in range) as a number. */
const replyInt = (value: Int64 | undefined): number => Number(value ?? 0);

/** Nanoseconds in a request, as whole milliseconds (rounded up, so that a duration never shrinks to 0). */
export function nsToMs(value: Int64 | undefined, field: string): number {
  const ns = requestInt(value, field);
  return Math.ceil(ns / 1e6);
}

/** Filters from a request: strings only. */
function filtersOf(value: unknown, field: string): string[] {
  const list = (value ?? []) as unknown[];
  if (!Array.isArray(list) || list.some((f) => typeof f !== 'string')) throw new ErrInvalidArgument(`${field} must be a list of strings`);
  return list as string[];
}

/** Drops the zero values (they mean "not set" on the wire). */
function policyOf(p: Required<PrunePolicy>): PrunePolicy {
  return {
    all: p.all,
    filters: p.filters,
    ...(p.keepDurationMs ? { keepDurationMs: p.keepDurationMs } : {}),
    ...(p.reservedSpace ? { reservedSpace: p.reservedSpace } : {}),
    ...(p.maxUsedSpace ? { maxUsedSpace: p.maxUsedSpace } : {}),
    ...(p.minFreeSpace ? { minFreeSpace: p.minFreeSpace } : {}),
  };
}

// --- BuildKit's control API -----------------------------------------------------------------

/** `moby.buildkit.v1.PruneRequest` on the wire. */
export interface ControlPruneRequest {
  filter?: string[];
  all?: boolean;
  keepDuration?: Int64;
  reservedSpace?: Int64;
  maxUsedSpace?: Int64;
  minFreeSpace?: Int64;
}

/**
 * The policy of a BuildKit prune request. Field 4 is read as `reservedSpace` (a floor) whichever
 * CLI sent it, as BuildKit ≥ 0.17 does; an old CLI's `--keep-storage` (keepBytes) arrives there.
 */
export function policyFromControl(req: ControlPruneRequest): PrunePolicy {
  return policyOf({
    all: Boolean(req.all),
    filters: filtersOf(req.filter, 'filter'),
    keepDurationMs: nsToMs(req.keepDuration, 'keepDuration'),
    reservedSpace: requestInt(req.reservedSpace, 'reservedSpace'),
    maxUsedSpace: requestInt(req.maxUsedSpace, 'maxUsedSpace'),
    minFreeSpace: requestInt(req.minFreeSpace, 'minFreeSpace'),
  });
}

/** `google.protobuf.Timestamp` of a JS time in milliseconds. */
function timestamp(ms: number): { seconds: string; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

/** A usage entry as BuildKit's `UsageRecord` (CreatedAt always, LastUsedAt only when used, Parents not Parent). */
export function toUsageRecord(u: UsageInfo): object {
  return {
    ID: u.id,
    Mutable: u.mutable,
    InUse: u.inUse,
    Size: String(u.size),
    CreatedAt: timestamp(u.createdAt.getTime()),
    ...(u.lastUsedAt ? { LastUsedAt: timestamp(u.lastUsedAt.getTime()) } : {}),
    UsageCount: String(u.usageCount),
    Description: u.description ?? '',
    RecordType: u.recordType,
    Shared: u.shared,
    Parents: [...u.parents],
  };
}

/** A policy as BuildKit's `GCPolicy` (ListWorkers). */
export function toGCPolicy(p: PrunePolicy): object {
  return {
    all: Boolean(p.all),
    keepDuration: String(BigInt(p.keepDurationMs ?? 0) * 1_000_000n),
    reservedSpace: String(Math.round(p.reservedSpace ?? 0)),
    filters: [...(p.filters ?? [])],
    maxUsedSpace: String(Math.round(p.maxUsedSpace ?? 0)),
    minFreeSpace: String(Math.round(p.minFreeSpace ?? 0)),
  };
}

// --- buildcache's own API --------------------------------------------------------------------

/** `buildcache.v1.UsageInfo` on the wire. */
export interface WireUsage {
  id: string;
  mutable: boolean;
  inUse: boolean;
  size: Int64;
  createdAtMs: Int64;
  lastUsedAtMs: Int64;
  usageCount: Int64;
  parents: string[];
  description?: string;
  recordType: string;
  shared: boolean;
}

/** A usage entry for the wire. */
export function toWireUsage(u: UsageInfo): WireUsage {
  return {
    id: u.id,
    mutable: u.mutable,
    inUse: u.inUse,
    size: String(u.size),
    createdAtMs: String(u.createdAt.getTime()),
    lastUsedAtMs: String(u.lastUsedAt?.getTime() ?? 0),
    usageCount: String(u.usageCount),
    parents: [...u.parents],
    ...(u.description !== undefined ? { description: u.description } : {}),
    recordType: u.recordType,
    shared: u.shared,
  };
}

/** A usage entry from the wire. */
export function fromWireUsage(w: WireUsage): UsageInfo {
  const lastUsed = replyInt(w.lastUsedAtMs);
  return {
    id: w.id,
    mutable: w.mutable,
    inUse: w.inUse,
    size: replyInt(w.size),
    createdAt: new Date(replyInt(w.createdAtMs)),
    ...(lastUsed ? { lastUsedAt: new Date(lastUsed) } : {}),
    usageCount: replyInt(w.usageCount),
    parents: w.parents,
    ...(w.description !== undefined && w.description !== null ? { description: w.description } : {}),
    recordType: w.recordType as RecordType,
    shared: w.shared,
  };
}

/** `buildcache.v1.PrunePolicy` on the wire. */
export interface WirePolicy {
  all?: boolean;
  filters?: string[];
  keepDurationMs?: Int64;
  reservedSpace?: Int64;
  maxUsedSpace?: Int64;
  minFreeSpace?: Int64;
}

/** A policy for the wire (the client checks nothing: the server does). */
export function toWirePolicy(p: PrunePolicy): WirePolicy {
  const int = (v: number | undefined): string => (v === undefined ? '0' : BigInt(Math.trunc(v)).toString());
  return {
    all: Boolean(p.all),
    filters: [...(p.filters ?? [])],
    keepDurationMs: int(p.keepDurationMs),
    reservedSpace: int(p.reservedSpace),
    maxUsedSpace: int(p.maxUsedSpace),
    minFreeSpace: int(p.minFreeSpace),
  };
}

/** A policy from a request, checked. */
export function policyFromWire(w: WirePolicy, index: number): PrunePolicy {
  const at = `policies[${index}]`;
  return policyOf({
    all: Boolean(w.all),
    filters: filtersOf(w.filters, `${at}.filters`),
    keepDurationMs: requestInt(w.keepDurationMs, `${at}.keepDurationMs`),
    reservedSpace: requestInt(w.reservedSpace, `${at}.reservedSpace`),
    maxUsedSpace: requestInt(w.maxUsedSpace, `${at}.maxUsedSpace`),
    minFreeSpace: requestInt(w.minFreeSpace, `${at}.minFreeSpace`),
  });
}
