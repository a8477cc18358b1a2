/**
 * Errors of the build frontend (`@buildcache/frontend`, `buildcache build`): a Dockerfile it cannot
 * read, a COPY source it cannot find, a RUN step that failed. Each names the line or path involved.
 */
import { BuildcacheError } from './base.js';

/** The Dockerfile has a syntax error, or an instruction that is unknown or not supported (details: line, instruction). */
export class ErrDockerfileParse extends BuildcacheError { readonly code = 'ERR_DOCKERFILE_PARSE'; }
/** A COPY source is missing from the build context or lies outside it (details: path). */
export class ErrCopySource extends BuildcacheError { readonly code = 'ERR_COPY_SOURCE'; }
/** A RUN step exited non-zero (details: exitCode, line, output: its last lines). */
export class ErrRunFailed extends BuildcacheError { readonly code = 'ERR_RUN_FAILED'; }
/** The container runtime (runc) could not start or run a step (details: runtime log). */
export class ErrRuntime extends BuildcacheError { readonly code = 'ERR_RUNTIME'; }
