/**
 * `buildcache build [-f Dockerfile] [-t NAME] [--no-cache] [--progress plain|tty|auto]
 * [--build-arg K=V] [--output FILE.tar] CONTEXT`: a Dockerfile built over the cache by
 * `@buildcache/frontend`, here or on the daemon (`--addr`); progress on stderr, the image's manifest
 * digest on stdout.
 */
import type { Logger } from 'pino';
import { ErrInvalidArgument, ErrRunFailed } from '@buildcache/errdefs';
import { parseCacheSpec, type CacheSpec } from '@buildcache/remotecache';
import { createProgress, type ProgressMode } from '@buildcache/frontend';
import type { RemoteBuildRequest } from '@buildcache/server';
import { UsageError, type Flags } from './args.js';
import { withDaemon, withWorkspace, type Target } from './targets.js';
import { EXIT } from './usage.js';

/** `--progress`: `auto` is tty when stderr (where progress goes) is a terminal, else plain. */
function progressMode(value: string | undefined): ProgressMode {
  const v = value ?? 'auto';
  if (v === 'plain' || v === 'tty') return v;
  if (v === 'quiet') return 'quiet';
  if (v === 'auto') return process.stderr.isTTY ? 'tty' : 'plain';
  throw new UsageError(`--progress: unknown mode ${JSON.stringify(v)}; use plain, tty or auto`);
}

/** `--build-arg K=V` (a bare `K` takes K's value from the environment, as docker does). */
function buildArgs(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list) {
    const eq = a.indexOf('=');
    const key = eq < 0 ? a : a.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`--build-arg ${JSON.stringify(a)}: expected NAME=VALUE`);
    const value = eq < 0 ? process.env[key] : a.slice(eq + 1);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** A `--cache-to` / `--cache-from` value; a malformed one is a usage error. */
function specOf(value: string, direction: 'to' | 'from'): CacheSpec {
  try {
    return parseCacheSpec(value, direction);
  } catch (err) {
    if (err instanceof ErrInvalidArgument) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * Runs `build` on the cache `target` names (opened here), or on the daemon at that address (the
 * context and local `--cache-from` layouts are read here and streamed to it, local `--cache-to`
 * layouts streamed back and written here); returns the exit code. The runtime is `$BUILDCACHE_RUNC` or `runc`.
 */
export async function buildCommand(flags: Flags, context: string | undefined, target: Target, logger: Logger): Promise<number> {
  if (context === undefined) throw new UsageError('build: missing CONTEXT (the build context directory, e.g. buildcache build .)');
  const mode = progressMode(flags.strings.get('progress'));
  const cacheTo = (flags.lists.get('cache-to') ?? []).map((v) => specOf(v, 'to'));
  const cacheFrom = (flags.lists.get('cache-from') ?? []).map((v) => specOf(v, 'from'));
  const s = flags.strings;
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const req: RemoteBuildRequest = {
    context,
    buildArgs: buildArgs(flags.lists.get('build-arg') ?? []),
    progress: createProgress(mode, process.stderr),
    signal: controller.signal,
    noCache: flags.booleans.has('no-cache'),
    ...(cacheFrom.length ? { cacheFrom } : {}),
    ...(cacheTo.length ? { cacheTo } : {}),
    ...(s.has('file') ? { dockerfile: s.get('file')! } : {}),
    ...(s.has('tag') ? { tag: s.get('tag')! } : {}),
    ...(s.has('output') ? { output: s.get('output')! } : {}),
  };
  try {
    const result = typeof target === 'string' ? await withDaemon(target, (client) => client.build(req)) : await withWorkspace(target, logger, (ws) => ws.build(req));
    for (const w of result.warnings) process.stderr.write(`WARNING: ${w}\n`);
    process.stdout.write(`${result.digest}\n`);
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof ErrRunFailed)) throw err;
    process.stderr.write(`buildcache: ${err.message}\n`);
    return EXIT.failure;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
