/**
 * `buildcache`: disk usage and pruning of a build cache, on the embedded backend by default or on
 * a containerd socket. Errors are one line on stderr; the exit code says their kind (see `--help`).
 */
import { readFile } from 'node:fs/promises';
import { constants, homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { parseBlobFormat, type OpenCacheOptions, type PrunePolicy } from '@buildcache/cache';
import {
  BuildcacheError, ErrDeadlineExceeded, ErrInvalidArgument, ErrNotAStore, ErrPermissionDenied, ErrStoreLocked, ErrUnavailable,
} from '@buildcache/errdefs';
import { readArgs, UsageError, type Flags, type Name } from './args.js';
import type { Operations } from '@buildcache/server/local';
import { du, pruneCommand, type CacheAccess } from './commands.js';
import { printDemo } from './demo.js';
import { withCache, withDaemon, withOperations, withWorkspace, type Target } from './targets.js';
import { canAsk, confirm, Output, Progress } from './terminal.js';
import { parseDuration, parseSize } from './units.js';
import { EXIT, USAGE } from './usage.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The default cache root: `$XDG_DATA_HOME/buildcache` (absolute only, as the XDG spec says), else `~/.local/share/buildcache`. */
export function defaultRoot(): string {
  const xdg = process.env.XDG_DATA_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'share'), 'buildcache');
}

async function version(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function format(value: string | undefined): 'table' | 'json' {
  if (value === undefined || value === 'table' || value === 'json') return value ?? 'table';
  throw new UsageError(`--format: unknown format ${JSON.stringify(value)}; use table or json`);
}

/** Where the cache is, from the global flags. */
function cacheOptions(flags: Flags, logger: Logger): OpenCacheOptions {
  const s = flags.strings;
  const containerd = s.get('containerd');
  for (const name of ['namespace', 'timeout'] as const) {
    if (s.has(name) && containerd === undefined) throw new UsageError(`--${name} applies only with --containerd SOCKET`);
  }
  const timeout = s.get('timeout');
  return {
    root: resolve(s.get('root') ?? defaultRoot()),
    logger,
    ...(containerd !== undefined ? { containerd } : {}),
    ...(s.has('namespace') ? { namespace: s.get('namespace')! } : {}),
    ...(s.has('snapshotter') ? { snapshotter: s.get('snapshotter')! } : {}),
    ...(timeout !== undefined ? { connectTimeoutMs: parseDuration(timeout, '--timeout') } : {}),
  };
}

const LOCAL_FLAGS = ['root', 'containerd', 'namespace', 'snapshotter', 'timeout'] as const;

/**
 * The daemon that du and prune go through: `--addr`, else `$BUILDCACHE_HOST` unless flags name a
 * cache to open here; undefined means open the cache directly.
 */
function daemonAddress(flags: Flags): string | undefined {
  const local = LOCAL_FLAGS.find((n) => flags.strings.has(n));
  const addr = flags.strings.get('addr');
  if (addr === undefined) return local === undefined ? process.env.BUILDCACHE_HOST || undefined : undefined;
  if (local !== undefined) throw new UsageError(`--${local} names a cache to open here, --addr a daemon that serves its own; give one of them`);
  return addr;
}

/** Splits buildx's `until=D` (and its older name `unused-for=D`) out of the filters. */
function splitUntil(filters: readonly string[]): { filters: string[]; until?: string } {
  const rest: string[] = [];
  let until: string | undefined;
  for (const f of filters) {
    const m = /^(until|unused-for)=(.*)$/.exec(f);
    if (!m) rest.push(f);
    else if (until !== undefined && until !== m[2]) throw new UsageError(`--filter ${m[1]}= is given twice with different values`);
    else until = m[2]!;
  }
  return { filters: rest, ...(until !== undefined ? { until } : {}) };
}

/** The value of a flag given in buildctl's or buildx's spelling (not both). */
function either(flags: Flags, buildctl: Name, buildx: string, buildxValue: string | undefined): [string, string] | undefined {
  const a = flags.strings.get(buildctl);
  if (a !== undefined && buildxValue !== undefined) throw new UsageError(`--${buildctl} and ${buildx} mean the same; give one of them`);
  if (a !== undefined) return [a, `--${buildctl}`];
  return buildxValue !== undefined ? [buildxValue, buildx] : undefined;
}

/** The prune policy from prune's flags. */
function prunePolicy(flags: Flags): PrunePolicy {
  const { filters, until } = splitUntil(flags.lists.get('filter') ?? []);
  const duration = either(flags, 'keep-duration', '--filter until', until);
  const size = (buildctl: Name, buildx: Name): number | undefined => {
    const v = either(flags, buildctl, `--${buildx}`, flags.strings.get(buildx));
    return v && parseSize(v[0], v[1], v[1] === `--${buildctl}` ? 'megabytes' : 'refused');
  };
  const keepDurationMs = duration && parseDuration(duration[0], duration[1]);
  const maxUsedSpace = size('keep-storage', 'max-used-space');
  const reservedSpace = size('keep-storage-min', 'reserved-space');
  const minFreeSpace = size('free-storage', 'min-free-space');
  return {
    all: flags.booleans.has('all'),
    filters,
    ...(keepDurationMs !== undefined ? { keepDurationMs } : {}),
    ...(maxUsedSpace !== undefined ? { maxUsedSpace } : {}),
    ...(reservedSpace !== undefined ? { reservedSpace } : {}),
    ...(minFreeSpace !== undefined ? { minFreeSpace } : {}),
  };
}

/** The exit code for an error, by kind. */
function exitCode(err: unknown): number {
  if (err instanceof UsageError || err instanceof ErrInvalidArgument) return EXIT.usage;
  if (err instanceof ErrPermissionDenied) return EXIT.permission;
  if (err instanceof ErrUnavailable || err instanceof ErrDeadlineExceeded || err instanceof ErrStoreLocked || err instanceof ErrNotAStore) {
    return EXIT.unavailable;
  }
  return EXIT.failure;
}

/** Aborts `controller` on SIGINT/SIGTERM (a second signal exits at once); returns the undo. */
function onSignals(controller: AbortController): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted + constants.signals[signal]);
    controller.abort(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let logger: Logger | undefined;
  try {
    const { command, args, flags } = readArgs(argv);
    if (flags.booleans.has('version')) {
      process.stdout.write(`buildcache ${await version()}\n`);
      return EXIT.ok;
    }
    if (flags.booleans.has('help') || command === 'help') {
      process.stdout.write(USAGE);
      return EXIT.ok;
    }
    if (command === undefined) {
      process.stderr.write(USAGE);
      return EXIT.usage;
    }
    const level = flags.strings.get('log-level') ?? (command === 'serve' ? 'info' : 'warn');
    if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level: unknown level ${JSON.stringify(level)}; use one of ${LOG_LEVELS.join(', ')}`);
    logger = pino({ level }, pino.destination(2));
    // The daemon and its client load gRPC: only when used.
    if (command === 'serve') return await (await import('./serve.js')).serve(flags, cacheOptions(flags, logger), logger);
    const addr = daemonAddress(flags);
    if (command === 'du' || command === 'prune') {
      const cache = addr ?? cacheOptions(flags, logger);
      const fmt = format(flags.strings.get('format'));
      const out = new Output();
      const progress = new Progress();
      if (command === 'prune') return await prune(flags, cache, fmt, out, progress);
      const { filters, until } = splitUntil(flags.lists.get('filter') ?? []);
      if (until !== undefined) throw new UsageError('du: the until= filter applies to prune only');
      await withCache(cache, (c) => du(c, { filters, verbose: flags.booleans.has('verbose'), format: fmt }, out, progress));
      return EXIT.ok;
    }
    return await runCommand(command, args, flags, addr ?? cacheOptions(flags, logger), logger);
  } catch (err) {
    const message = err instanceof BuildcacheError || err instanceof UsageError ? err.message : String(err);
    process.stderr.write(`buildcache: ${message.split('\n')[0]}\n`);
    logger?.debug({ err }, 'command failed');
    return exitCode(err);
  }
}

/**
 * Runs a command on the cache `target` names, opened in this process, or on the daemon at that
 * address; returns the exit code. Each command's modules (frontend, registry, images) load only when
 * it runs: du and prune need none.
 */
async function runCommand(command: string, args: readonly string[], flags: Flags, target: Target, logger: Logger): Promise<number> {
  const out = new Output();
  if (command === 'demo') {
    const run = async (ops: Operations, cache: CacheAccess): Promise<void> => {
      printDemo(await ops.demo(), out);
      await du(cache, { filters: [], verbose: false, format: 'table' }, out, new Progress());
    };
    await (typeof target === 'string' ? withDaemon(target, (client) => run(client, client)) : withWorkspace(target, logger, (ws, opened) => run(ws, opened.cache)));
    return EXIT.ok;
  }
  if (command === 'build') return await (await import('./build.js')).buildCommand(flags, args[0], target, logger);
  let run: (ops: Operations) => Promise<void>;
  if (command === 'cat') {
    const { catCommand } = await import('./cat.js');
    const write = (chunk: Buffer): Promise<void> => new Promise((ok, fail) => process.stdout.write(chunk, (e) => (e ? fail(e) : ok())));
    run = (ops) => catCommand(ops, args[0]!, args[1]!, write);
  } else if (command === 'pull') {
    const { pullCommand } = await import('./pull.js');
    run = (ops) => pullCommand(ops, args[0]!, flags.booleans.has('lazy'), out);
  } else if (command === 'push') {
    const { pushCommand } = await import('./push.js');
    const compression = flags.strings.get('compression');
    parseBlobFormat(compression, '--compression'); // checked here: a bad value opens no cache and reaches no daemon
    run = (ops) => pushCommand(ops, args[0]!, args[1]!, compression, out);
  } else {
    // import, export, images: readArgs admits no other command.
    run = (await import('./images.js')).imageCommand(command, args[0]!, flags, out);
  }
  await withOperations(target, logger, run);
  return EXIT.ok;
}

async function prune(flags: Flags, options: Target, fmt: 'table' | 'json', out: Output, progress: Progress): Promise<number> {
  const policy = prunePolicy(flags);
  const dryRun = flags.booleans.has('dry-run');
  return withCache(options, async (cache) => {
    const controller = new AbortController();
    out.onClose(() => controller.abort('stdout closed'));
    const undo = onSignals(controller);
    try {
      if (!dryRun && fmt === 'table' && !flags.booleans.has('force') && canAsk()) {
        const yes = await confirm('WARNING! This will remove the build cache records the options select. Are you sure you want to continue?');
        if (!yes) {
          process.stderr.write('buildcache: prune cancelled; nothing was removed\n');
          return EXIT.ok;
        }
      }
      const verbose = flags.booleans.has('verbose');
      const outcome = await pruneCommand(cache, { policy, dryRun, verbose, format: fmt, signal: controller.signal }, out, progress);
      const reason: unknown = controller.signal.reason;
      if (outcome.complete || out.closed || typeof reason !== 'string' || !(reason in constants.signals)) return EXIT.ok;
      return EXIT.interrupted + constants.signals[reason as NodeJS.Signals];
    } finally {
      undo();
    }
  });
}
