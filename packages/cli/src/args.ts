/**
 * The command line: which flags exist (with buildctl's and buildx's spellings), and reading argv into
 * them with one-line usage errors instead of node's parseArgs messages.
 */
import { parseArgs } from 'node:util';

/** Bad usage: exit code 2, message on one line. */
export class UsageError extends Error {}

const OPTIONS = {
  root: { type: 'string' },
  addr: { type: 'string' },
  group: { type: 'string' },
  metrics: { type: 'string' },
  gc: { type: 'boolean' },
  containerd: { type: 'string' },
  namespace: { type: 'string' },
  snapshotter: { type: 'string' },
  timeout: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  filter: { type: 'string', short: 'f', multiple: true },
  verbose: { type: 'boolean', short: 'v' },
  format: { type: 'string' },
  all: { type: 'boolean', short: 'a' },
  force: { type: 'boolean' },
  'keep-duration': { type: 'string' },
  'keep-storage': { type: 'string' },
  'keep-storage-min': { type: 'string' },
  'free-storage': { type: 'string' },
  'max-used-space': { type: 'string' },
  'reserved-space': { type: 'string' },
  'min-free-space': { type: 'string' },
  'dry-run': { type: 'boolean' },
  file: { type: 'string' },
  tag: { type: 'string', short: 't' },
  'no-cache': { type: 'boolean' },
  progress: { type: 'string' },
  'build-arg': { type: 'string', multiple: true },
  output: { type: 'string', short: 'o' },
  lazy: { type: 'boolean' },
  compression: { type: 'string' },
  'cache-to': { type: 'string', multiple: true },
  'cache-from': { type: 'string', multiple: true },
} as const;

/** A flag's long name. */
export type Name = keyof typeof OPTIONS;

/** The flags each command takes (besides the global ones). */
const COMMAND_FLAGS: Record<string, readonly Name[]> = {
  du: ['filter', 'verbose', 'format'],
  prune: [
    'all', 'force', 'filter', 'keep-duration', 'keep-storage', 'keep-storage-min', 'free-storage',
    'max-used-space', 'reserved-space', 'min-free-space', 'dry-run', 'verbose', 'format',
  ],
  demo: [],
  build: ['file', 'tag', 'no-cache', 'progress', 'build-arg', 'output', 'cache-to', 'cache-from'],
  pull: ['lazy'],
  cat: [],
  push: ['compression'],
  import: [],
  export: ['output', 'format'],
  images: ['format'],
  serve: ['group', 'metrics', 'gc'],
};
/** The positional arguments each command takes (after its name), as shown in usage errors. */
const COMMAND_ARGS: Record<string, readonly string[]> = {
  build: ['CONTEXT'], pull: ['REF'], cat: ['REF', 'PATH'], push: ['NAME|RECORD', 'REF'], import: ['FILE (or - for stdin)'], export: ['NAME'],
};
const GLOBAL_FLAGS: readonly Name[] = ['addr', 'root', 'containerd', 'namespace', 'snapshotter', 'timeout', 'log-level', 'help', 'version'];

/** The flags given, by their long name. */
export interface Flags {
  readonly strings: ReadonlyMap<Name, string>;
  /** The values of each repeatable flag given (`--filter`, `--build-arg`, `--cache-to`, `--cache-from`), in order. */
  readonly lists: ReadonlyMap<Name, readonly string[]>;
  readonly booleans: ReadonlySet<Name>;
}

/** What the command line asked for. */
export interface Args {
  readonly command: string | undefined;
  /** The command's positional arguments (see COMMAND_ARGS). */
  readonly args: readonly string[];
  readonly flags: Flags;
}

const flagName = (raw: string): string => (raw.startsWith('--') ? raw : `${raw} (--${longOf(raw)})`);
const longOf = (raw: string): string => Object.entries(OPTIONS).find(([, o]) => 'short' in o && `-${o.short}` === raw)?.[0] ?? raw;

/** Reads argv; every mistake is a UsageError of one line. */
export function readArgs(argv: readonly string[]): Args {
  const { tokens } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  const strings = new Map<Name, string>();
  const lists = new Map<Name, string[]>();
  const booleans = new Set<Name>();
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      continue;
    }
    if (t.kind !== 'option') continue;
    if (!(t.name in OPTIONS)) throw new UsageError(`unknown flag ${t.rawName}; see buildcache --help`);
    // build's -f is --file (docker build's); elsewhere -f is --filter (buildctl's).
    const name = t.rawName === '-f' && positionals[0] === 'build' ? 'file' : (t.name as Name);
    if (OPTIONS[name].type === 'boolean') {
      if (t.value !== undefined) throw new UsageError(`${flagName(t.rawName)} takes no value (got ${JSON.stringify(t.value)})`);
      booleans.add(name);
      continue;
    }
    if (t.value === undefined) {
      const hint = t.rawName === '-f' ? " (-f is --filter, as in buildctl; buildx's -f is --force here)" : '';
      throw new UsageError(`${flagName(t.rawName)} needs a value${hint}`);
    }
    if (!t.inlineValue && t.value.startsWith('-') && t.value.length > 1) {
      throw new UsageError(
        `${flagName(t.rawName)} needs a value, but the next argument ${JSON.stringify(t.value)} looks like a flag; ` +
          `write ${t.rawName}=${t.value} if that is the value`,
      );
    }
    if (t.value === '') {
      throw new UsageError(`${flagName(t.rawName)} has an empty value (an unset shell variable?); give a value or leave the flag out`);
    }
    if ('multiple' in OPTIONS[name]) lists.set(name, [...(lists.get(name) ?? []), t.value]);
    else if (strings.has(name) && strings.get(name) !== t.value) throw new UsageError(`--${name} is given twice with different values`);
    else strings.set(name, t.value);
  }
  const command = positionals[0];
  if (command !== undefined && command !== 'help') {
    const allowed = COMMAND_FLAGS[command];
    if (!allowed) throw new UsageError(`unknown command ${JSON.stringify(command)}; see buildcache --help`);
    const wanted = COMMAND_ARGS[command] ?? [];
    if (positionals.length > wanted.length + 1) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[wanted.length + 1])}`);
    // build's CONTEXT is checked by the build command (its message names the build context).
    if (command !== 'build' && positionals.length < wanted.length + 1) {
      const missing = wanted.slice(positionals.length - 1).join(' ');
      throw new UsageError(wanted.length === 1 ? `${command}: give the ${missing}` : `${command}: missing ${missing}; usage: buildcache ${command} ${wanted.join(' ')}`);
    }
    for (const name of [...strings.keys(), ...booleans, ...lists.keys()]) {
      if (!GLOBAL_FLAGS.includes(name) && !allowed.includes(name)) throw new UsageError(`${command}: unknown flag --${name}; see buildcache --help`);
    }
  }
  return { command, args: positionals.slice(1), flags: { strings, lists, booleans } };
}
