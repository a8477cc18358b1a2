/** The gRPC status a server-side failure answers with: typed errors by class, anything else INTERNAL. */
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js';
import { BuildcacheError } from '@buildcache/errdefs';

const byCode: Readonly<Record<string, Status>> = {
  ERR_NOT_FOUND: Status.NOT_FOUND,
  ERR_ALREADY_EXISTS: Status.ALREADY_EXISTS,
  ERR_FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  ERR_INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  ERR_UNAVAILABLE: Status.UNAVAILABLE,
  ERR_OUT_OF_RANGE: Status.OUT_OF_RANGE,
  ERR_NOT_IMPLEMENTED: Status.UNIMPLEMENTED,
  ERR_DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
  ERR_CANCELED: Status.CANCELLED,
  ERR_PERMISSION_DENIED: Status.PERMISSION_DENIED,
  ERR_RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  ERR_ABORTED: Status.ABORTED,
  ERR_IN_USE: Status.FAILED_PRECONDITION,
  ERR_RELEASED: Status.FAILED_PRECONDITION,
  ERR_CLOSED: Status.UNAVAILABLE,
  ERR_STORE_LOCKED: Status.UNAVAILABLE,
  ERR_NOT_A_STORE: Status.FAILED_PRECONDITION,
  // What a client sent: a build's Dockerfile or context, an imported archive.
  ERR_CORRUPT_LAYER: Status.INVALID_ARGUMENT,
  ERR_UNSAFE_ENTRY: Status.INVALID_ARGUMENT,
  ERR_NOT_AN_IMAGE_ARCHIVE: Status.INVALID_ARGUMENT,
  ERR_INVALID_IMAGE: Status.INVALID_ARGUMENT,
  ERR_DOCKERFILE_PARSE: Status.INVALID_ARGUMENT,
  ERR_COPY_SOURCE: Status.INVALID_ARGUMENT,
  ERR_RUN_FAILED: Status.ABORTED,
};

/** A status error for `err`, carrying its message (and its errdefs code in the `buildcache-code` trailer). */
export function toStatus(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (err instanceof BuildcacheError) {
    metadata.set('buildcache-code', err.code);
    return { code: byCode[err.code] ?? Status.UNKNOWN, details: err.message, metadata };
  }
  return { code: Status.INTERNAL, details: `internal error: ${err instanceof Error ? err.message : String(err)}`, metadata };
}
