/**
 * Failures of a layer apply as typed errors naming the entry: a filesystem error (ENOSPC, EPERM,
 * ENAMETOOLONG…) becomes the errdefs class for its errno, with the entry and errno in `details`
 * and no host path in the message (the host path goes to the debug log).
 */
import { join } from 'node:path';
import {
  BuildcacheError,
  ErrAlreadyExists,
  ErrPermissionDenied,
  ErrResourceExhausted,
  ErrUnknown,
  ErrUnsafeEntry,
} from '@buildcache/errdefs';
import type { ErrorOptions } from '@buildcache/errdefs';
import type { Logger } from 'pino';

type ErrorClass = new (message: string, options?: ErrorOptions) => BuildcacheError;

/** errno code → what it means for a layer entry, and the class it is reported as. */
const ERRNO: Readonly<Record<string, readonly [ErrorClass, string]>> = {
  ENOSPC: [ErrResourceExhausted, 'no space left on the snapshot filesystem'],
  EDQUOT: [ErrResourceExhausted, 'disk quota exceeded on the snapshot filesystem'],
  EFBIG: [ErrResourceExhausted, 'the file is larger than the snapshot filesystem or the process file-size limit allows'],
  EMFILE: [ErrResourceExhausted, 'too many open files'],
  ENFILE: [ErrResourceExhausted, 'too many open files in the system'],
  ENOMEM: [ErrResourceExhausted, 'out of memory'],
  EPERM: [ErrPermissionDenied, 'operation not permitted'],
  EACCES: [ErrPermissionDenied, 'permission denied'],
  EROFS: [ErrPermissionDenied, 'the snapshot filesystem is read-only'],
  EEXIST: [ErrAlreadyExists, 'something already exists at its path'],
  ENAMETOOLONG: [ErrUnsafeEntry, 'its name is too long for the filesystem'],
  ELOOP: [ErrUnsafeEntry, 'too many levels of symbolic links'],
  EMLINK: [ErrUnsafeEntry, 'too many hard links'],
  ENOTDIR: [ErrUnsafeEntry, 'a parent is not a directory'],
  EISDIR: [ErrUnsafeEntry, 'a directory is in the way'],
  ENOTEMPTY: [ErrUnsafeEntry, 'a directory in the way is not empty'],
  EINVAL: [ErrUnsafeEntry, 'the filesystem refuses it (invalid argument)'],
  EXDEV: [ErrUnsafeEntry, 'it crosses filesystems'],
  ENOENT: [ErrUnknown, 'a path it needs vanished during the apply'],
};

/**
 * The error `err` (thrown while applying `entry`) as callers get it: typed errors pass through,
 * errno errors get the class of their code (their message, which holds the host path, is dropped),
 * anything else is ErrUnknown with `roots` (the target, then the lower dirs) cut out of its message.
 * The host path is logged at debug.
 */
export function entryFailure(err: unknown, entry: string | undefined, roots: readonly string[], logger: Logger | undefined): BuildcacheError {
  if (err instanceof BuildcacheError) return err;
  const what = entry === undefined ? 'cannot apply the layer' : `cannot apply layer entry ${JSON.stringify(entry)}`;
  const details = entry === undefined ? {} : { entry };
  const e = err as NodeJS.ErrnoException;
  const [target = ''] = roots;
  const path = e?.path ?? (entry === undefined ? target : join(target, entry));
  logger?.debug({ entry, path, dest: (e as { dest?: string })?.dest, err }, 'layer entry failed');
  if (typeof e?.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)) {
    const [cls, why] = ERRNO[e.code] ?? [ErrUnknown, 'the filesystem refused it'];
    return new cls(`${what}: ${why} (${e.code})`, { cause: err, details: { ...details, errno: e.code } });
  }
  let text = e instanceof Error ? e.message : String(err);
  for (const root of roots) text = text.split(root).join('<snapshot>');
  return new ErrUnknown(`${what}: ${text}`, { cause: err, details });
}
