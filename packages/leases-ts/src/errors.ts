/**
 * gRPC status → `@buildcache/errdefs` error, plus the client-side argument checks. Every error the
 * client throws is a `BuildcacheError`; a raw gRPC error never reaches the caller.
 */
import { status as Status } from '@grpc/grpc-js';
import {
  BuildcacheError, ErrAborted, ErrAlreadyExists, ErrCanceled, ErrDeadlineExceeded, ErrFailedPrecondition,
  ErrInvalidArgument, ErrNotFound, ErrNotImplemented, ErrOutOfRange, ErrPermissionDenied, ErrResourceExhausted,
  ErrUnavailable, ErrUnknown,
} from '@buildcache/errdefs';
import type { ErrorDetails, ErrorOptions } from '@buildcache/errdefs';

type ErrorClass = new (message: string, options?: ErrorOptions) => BuildcacheError;

/** What a failed call was about: the gRPC method plus key / digest / id / ref where known. */
export interface CallContext {
  readonly method: string;
  readonly key?: string;
  readonly digest?: string;
  readonly id?: string;
  readonly ref?: string;
  readonly snapshotter?: string;
}

const byCode: ReadonlyMap<number, ErrorClass> = new Map<number, ErrorClass>([
  [Status.CANCELLED, ErrCanceled],
  [Status.UNKNOWN, ErrUnknown],
  [Status.INVALID_ARGUMENT, ErrInvalidArgument],
  [Status.DEADLINE_EXCEEDED, ErrDeadlineExceeded],
  [Status.NOT_FOUND, ErrNotFound],
  [Status.ALREADY_EXISTS, ErrAlreadyExists],
  [Status.PERMISSION_DENIED, ErrPermissionDenied],
  [Status.RESOURCE_EXHAUSTED, ErrResourceExhausted],
  [Status.FAILED_PRECONDITION, ErrFailedPrecondition],
  [Status.ABORTED, ErrAborted],
  [Status.OUT_OF_RANGE, ErrOutOfRange],
  [Status.UNIMPLEMENTED, ErrNotImplemented],
  [Status.INTERNAL, ErrUnknown],
  [Status.UNAVAILABLE, ErrUnavailable],
  [Status.DATA_LOSS, ErrUnknown],
  [Status.UNAUTHENTICATED, ErrPermissionDenied],
]);

/**
 * containerd's errdefs append the class to the message (`…: not found`). Some paths (Snapshots.List,
 * Diff) return those as UNKNOWN; for UNKNOWN only, the suffix refines the class.
 */
const bySuffix: readonly [string, ErrorClass][] = [
  [': not found', ErrNotFound],
  [': already exists', ErrAlreadyExists],
  [': failed precondition', ErrFailedPrecondition],
  [': invalid argument', ErrInvalidArgument],
  [': not implemented', ErrNotImplemented],
  [': unavailable', ErrUnavailable],
  [': out of range', ErrOutOfRange],
];

interface GrpcLikeError {
  code?: unknown;
  details?: unknown;
  message?: unknown;
}

function isGrpcError(err: unknown): err is Error & GrpcLikeError {
  return err instanceof Error && typeof (err as GrpcLikeError).code === 'number';
}

function contextDetails(ctx: CallContext, extra: Record<string, unknown> = {}): ErrorDetails {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx)) if (v !== undefined && v !== '') out[k] = v;
  return { ...out, ...extra } as ErrorDetails;
}

/** The gRPC status code of an error thrown by this client, if it came from the server. */
export function grpcCodeOf(err: unknown): number | undefined {
  if (!(err instanceof BuildcacheError)) return undefined;
  const code = err.details['grpcCode'];
  return typeof code === 'number' ? code : undefined;
}

/** Maps anything a gRPC call threw (or emitted) to a typed error carrying the server's message and `ctx`. */
export function fromGrpc(err: unknown, ctx: CallContext): BuildcacheError {
  if (err instanceof BuildcacheError) return err;
  if (!isGrpcError(err)) {
    return new ErrUnknown(`${ctx.method}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      details: contextDetails(ctx),
    });
  }
  const code = err.code as number;
  const text = typeof err.details === 'string' && err.details !== '' ? err.details : String(err.message);
  let cls = byCode.get(code) ?? ErrUnknown;
  if (code === Status.UNKNOWN) cls = bySuffix.find(([suffix]) => text.endsWith(suffix))?.[1] ?? ErrUnknown;
  const cause = new Error(err.message);
  cause.name = 'GrpcStatus';
  return new cls(text, { cause, details: contextDetails(ctx, { grpcCode: code }) });
}

/** Rejects a value that cannot go on the wire as a non-negative int64 without loss. */
export function checkUint(value: number, field: string, ctx: CallContext): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ErrInvalidArgument(`${field} must be a non-negative safe integer, got ${value}`, {
      details: contextDetails(ctx, { field }),
    });
  }
  return value;
}

/** Converts an int64 from the wire (a decimal string with `longs: String`) to a checked number. */
export function toNumber(value: unknown, field: string, ctx: CallContext): number {
  if (value === undefined || value === null || value === '') return 0;
  const n = typeof value === 'number' ? value : Number(String(value));
  if (!Number.isSafeInteger(n)) {
    throw new ErrOutOfRange(`${field} ${String(value)} is not a safe integer`, {
      details: contextDetails(ctx, { field, value: String(value) }),
    });
  }
  return n;
}

const GC_PREFIX = 'containerd.io/gc.';

/**
 * Refuses `containerd.io/gc.*` labels with empty values: containerd drops empty values silently,
 * which would, for example, turn a flat lease into a normal one.
 */
export function checkLabels(labels: Readonly<Record<string, string>> | undefined, ctx: CallContext): void {
  if (!labels) return;
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== 'string') {
      throw new ErrInvalidArgument(`label ${k} must be a string`, { details: contextDetails(ctx, { label: k }) });
    }
    if (k.startsWith(GC_PREFIX) && v === '') {
      throw new ErrInvalidArgument(`label ${k} must not be empty (containerd would drop it silently)`, {
        details: contextDetails(ctx, { label: k }),
      });
    }
  }
}

const NAMESPACE_RE = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

/** Checks a namespace name as containerd does (identifier syntax, at most 76 characters). */
export function checkNamespace(name: string, method = 'namespace'): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 76 || !NAMESPACE_RE.test(name)) {
    throw new ErrInvalidArgument(
      `namespace ${JSON.stringify(name)} is invalid: it must match ${NAMESPACE_RE.source} and have at most 76 characters`,
      { details: { method, id: String(name) } },
    );
  }
  return name;
}

/** Requires a non-empty string argument (snapshot key, digest, lease id, ingest ref). */
export function checkNonEmpty(value: string, field: string, ctx: CallContext): string {
  if (typeof value !== 'string' || value === '') {
    throw new ErrInvalidArgument(`${field} must be a non-empty string`, { details: contextDetails(ctx, { field }) });
  }
  return value;
}

/** An error raised by the client itself (protocol surprises), with the call context. */
export function protocolError(message: string, ctx: CallContext, extra: Record<string, unknown> = {}): ErrUnknown {
  return new ErrUnknown(`${ctx.method}: ${message}`, { details: contextDetails(ctx, extra) });
}
