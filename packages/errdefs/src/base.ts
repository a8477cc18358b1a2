/** The base error class and its options, in their own module so area files (registry.ts, ...) can extend it without an import cycle through the index. */

/** Context attached to an error: the object involved and, where it came from, the call. */
export interface ErrorDetails {
  readonly id?: string;
  readonly key?: string;
  readonly digest?: string;
  readonly path?: string;
  readonly entry?: string;
  readonly method?: string;
  readonly [extra: string]: unknown;
}

/** Options accepted by every error constructor. */
export interface ErrorOptions {
  readonly cause?: unknown;
  readonly details?: ErrorDetails;
}

/** Base class of every error buildcache throws on purpose. */
export abstract class BuildcacheError extends Error {
  abstract readonly code: string;
  readonly details: ErrorDetails;
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options.details ?? {};
  }
}
