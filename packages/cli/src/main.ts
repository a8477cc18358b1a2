/**
 * `buildcache`: disk usage and pruning of a build cache, on the embedded backend by default or on
 * a containerd socket. Errors are one line on stderr: exit code 2 for bad usage, 1 for failures.
 */
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { CacheManager, type PrunePolicy } from '@buildcache/cache';
import { BuildcacheError, ErrInvalidArgument } from '@buildcache/errdefs';
import { openBackend, cacheRoot } from './backend.js';
import { du, pruneCommand } from './commands.js';
import { demo } from './demo.js';
import { parseDuration, parseSize } from './units.js';

const USAGE = `Usage: buildcache [global options] <command> [options]

Commands:
  du       Show disk usage of the build cache
  prune    Remove unused cache records
  demo     Build a small chain of cache records, export it, and show du

Global options:
  --root DIR             cache root (default: $XDG_DATA_HOME/buildcache or ~/.local/share/buildcache)
  --containerd SOCKET    use a containerd daemon instead of the embedded backend
  --namespace NS         containerd namespace (default: buildcache)
  --snapshotter NAME     overlayfs or native (default: overlayfs when possible)
  --log-level LEVEL      fatal, error, warn, info, debug, trace (default: warn)
  -h, --help             show this help
  --version              print the version

du options:
  -f, --filter F         filter records (repeatable; several filters are OR-ed, a comma is AND)
  -v, --verbose          one block per record
  --format table|json    output format (default: table)

prune options:
  --all                  include internal and frontend records
  -f, --filter F         only records matching (repeatable)
  --keep-duration D      keep records used within D (e.g. 48h)
  --keep-storage S       prune until the cache uses at most S (e.g. 10GB)
  --keep-storage-min S   never prune below S
  --free-storage S       prune until the disk has S free
  --dry-run              show what would be removed, remove nothing
  -v, --verbose          one block per record
  --format table|json    output format (default: table)
`;

class UsageError extends Error {}

const OPTIONS = {
  root: { type: 'string' },
  containerd: { type: 'string' },
  namespace: { type: 'string' },
  snapshotter: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  filter: { type: 'string', short: 'f', multiple: true },
  verbose: { type: 'boolean', short: 'v' },
  format: { type: 'string' },
  all: { type: 'boolean' },
  'keep-duration': { type: 'string' },
  'keep-storage': { type: 'string' },
  'keep-storage-min': { type: 'string' },
  'free-storage': { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

const COMMAND_FLAGS: Record<string, readonly string[]> = {
  du: ['filter', 'verbose', 'format'],
  prune: ['all', 'filter', 'keep-duration', 'keep-storage', 'keep-storage-min', 'free-storage', 'dry-run', 'verbose', 'format'],
  demo: [],
};
const GLOBAL_FLAGS = ['root', 'containerd', 'namespace', 'snapshotter', 'log-level', 'help', 'version'];

async function version(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function format(value: string | undefined): 'table' | 'json' {
  if (value === undefined || value === 'table' || value === 'json') return value ?? 'table';
  throw new UsageError(`--format: unknown format ${JSON.stringify(value)}; use table or json`);
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`buildcache: ${(err as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`buildcache ${await version()}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  const logger = pino({ level: values['log-level'] ?? 'warn' }, pino.destination(2));
  try {
    const allowed = COMMAND_FLAGS[command];
    if (!allowed) throw new UsageError(`unknown command ${JSON.stringify(command)}; see buildcache --help`);
    if (positionals.length > 1) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[1])}`);
    for (const key of Object.keys(values)) {
      if (!GLOBAL_FLAGS.includes(key) && !allowed.includes(key)) throw new UsageError(`${command}: unknown flag --${key}`);
    }
    const flags = {
      namespace: values.namespace ?? 'buildcache',
      ...(values.root !== undefined ? { root: values.root } : {}),
      ...(values.containerd !== undefined ? { containerd: values.containerd } : {}),
      ...(values.snapshotter !== undefined ? { snapshotter: values.snapshotter } : {}),
    };
    const fmt = format(values.format);
    const policy: PrunePolicy = {
      all: values.all === true,
      filters: values.filter ?? [],
      ...(values['keep-duration'] ? { keepDurationMs: parseDuration(values['keep-duration'], '--keep-duration') } : {}),
      ...(values['keep-storage'] ? { maxUsedSpace: parseSize(values['keep-storage'], '--keep-storage') } : {}),
      ...(values['keep-storage-min'] ? { reservedSpace: parseSize(values['keep-storage-min'], '--keep-storage-min') } : {}),
      ...(values['free-storage'] ? { minFreeSpace: parseSize(values['free-storage'], '--free-storage') } : {}),
    };
    const backend = await openBackend(flags, logger);
    try {
      const cache = await CacheManager.open({ root: cacheRoot(flags), backend, logger });
      try {
        const out = process.stdout;
        const verbose = values.verbose === true;
        if (command === 'du') await du(cache, { filters: values.filter ?? [], verbose, format: fmt }, out);
        else if (command === 'prune') await pruneCommand(cache, { policy, dryRun: values['dry-run'] === true, verbose, format: fmt }, out);
        else {
          await demo(cache, out);
          await du(cache, { filters: [], verbose: false, format: 'table' }, out);
        }
      } finally {
        await cache.close();
      }
    } finally {
      await backend.close();
    }
    return 0;
  } catch (err) {
    const usage = err instanceof UsageError || err instanceof ErrInvalidArgument;
    const message = err instanceof BuildcacheError || err instanceof UsageError ? err.message : String(err);
    process.stderr.write(`buildcache: ${message.split('\n')[0]}\n`);
    logger.debug({ err }, 'command failed');
    return usage ? 2 : 1;
  }
}
