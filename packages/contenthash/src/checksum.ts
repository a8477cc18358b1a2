/**
 * Content checksums of a path in a cache record (`checksum`) or in a build context on the host
 * (`checksumDir`) — the cache keys of COPY and ADD. A record's checksums are computed over a
 * read-only mount, mounted only when something is not known yet, and what was learnt is kept
 * with the record (one metadata read the next time); a mutable ref's are never kept, since its
 * data may still change.
 */
import { stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import { ImmutableRef, type MutableRef } from '@buildcache/cache';
import { PatternMatcher, readDockerignore } from './patterns.js';
import { selectionChecksum, wildcardChecksum, type Selection } from './select.js';
import { Tree, type Node } from './tree.js';

/** Options of `checksum` and `checksumDir` (BuildKit's ChecksumOpts). */
export interface ChecksumOptions {
  /** Follow a symlink that the path itself names (parent components are always followed, inside the root). */
  readonly followLinks?: boolean;
  /** The path is a pattern (`*`, `?`, `[...]` per component); matches are checksummed together. */
  readonly wildcard?: boolean;
  /** Keep only paths (relative to the path) that match one of these patterns (or whose parent does). */
  readonly include?: readonly string[];
  /** Leave out paths (relative to the path) that these patterns match; `!` re-includes. */
  readonly exclude?: readonly string[];
  /** How many files are read at once (default 16). */
  readonly concurrency?: number;
}

/** Options of `checksumDir`. */
export interface ChecksumDirOptions extends ChecksumOptions {
  /** The path inside the directory to checksum (default `/`, the whole directory). */
  readonly path?: string;
  /**
   * Paths of the directory to treat as absent: `true` reads `<dir>/.dockerignore`, an array gives
   * the patterns (relative to the directory, `.dockerignore` syntax).
   */
  readonly dockerignore?: boolean | readonly string[];
}

/** The external metadata value a record's known checksums are kept under. */
export const CHECKSUMS_KEY = 'contenthash.v1';

function checkOptions(path: unknown, o: ChecksumOptions): void {
  if (typeof path !== 'string') throw new ErrInvalidArgument(`checksum path must be a string, not ${JSON.stringify(path)}`);
  for (const name of ['include', 'exclude'] as const) {
    const v = o[name];
    if (v !== undefined && (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))) {
      throw new ErrInvalidArgument(`checksum option ${name} must be an array of pattern strings`);
    }
  }
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency > 0)) {
    throw new ErrInvalidArgument(`checksum option concurrency must be a positive integer, not ${String(o.concurrency)}`);
  }
}

/** The checksum of `path` in `tree` by `options`, or undefined when the path does not exist. */
async function compute(tree: Tree, path: string, o: ChecksumOptions): Promise<string | undefined> {
  const include = o.include?.length ? new PatternMatcher(o.include) : undefined;
  const exclude = o.exclude?.length ? new PatternMatcher(o.exclude) : undefined;
  const sel: Selection = { followLinks: o.followLinks === true, ...(include ? { include } : {}), ...(exclude ? { exclude } : {}) };
  if (o.wildcard) return wildcardChecksum(tree, path, sel);
  if (include || exclude) return selectionChecksum(tree, path, sel);
  const real = await tree.resolve(path, o.followLinks === true);
  return real === undefined ? undefined : (await tree.digest(real))?.d;
}

function decode(bytes: Uint8Array | undefined): Map<string, Node> {
  if (!bytes) return new Map();
  try {
    const doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as { v?: number; nodes?: Record<string, Node> };
    return doc.v === 1 && doc.nodes ? new Map(Object.entries(doc.nodes)) : new Map();
  } catch {
    return new Map(); // unreadable: computed again
  }
}

function encode(memo: Map<string, Node>): Uint8Array {
  return Buffer.from(JSON.stringify({ v: 1, nodes: Object.fromEntries(memo) }));
}

/**
 * The content checksum (`sha256:…`) of `path` in the record of `ref`, BuildKit's contenthash:
 * a file's digest covers its header (type, mode, owner, size, link target, device numbers,
 * xattrs; not times) and bytes; a directory's, its header and (name, digest) of its children.
 * Throws ErrNotFound when the path does not exist in the record.
 */
export async function checksum(ref: ImmutableRef | MutableRef, path: string, options: ChecksumOptions = {}): Promise<string> {
  checkOptions(path, options);
  const keep = ref instanceof ImmutableRef;
  const memo = keep ? decode(await ref.getExternal(CHECKSUMS_KEY)) : new Map<string, Node>();
  let mounted: Awaited<ReturnType<ImmutableRef['mount']>> | undefined;
  const tree = new Tree({
    root: async () => (mounted ??= await ref.mount({ readonly: true })).target,
    memo,
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
  });
  let digest: string | undefined;
  try {
    digest = await compute(tree, path, options);
  } finally {
    await mounted?.unmount();
  }
  if (keep && tree.added) await ref.setExternal(CHECKSUMS_KEY, encode(memo));
  if (digest === undefined) {
    throw new ErrNotFound(`failed to calculate checksum of ref ${ref.id}: ${JSON.stringify(path)}: not found`, {
      details: { id: ref.id, path },
    });
  }
  return digest;
}

/**
 * The content checksum of a build context on the host: the same digest as `checksum` gives for
 * the same tree, computed streaming (memory bounded by the widest directory, `concurrency` files
 * at once), unchanged by mtime-only changes. Throws ErrNotFound when `dir` or the path is missing.
 */
export async function checksumDir(dir: string, options: ChecksumDirOptions = {}): Promise<string> {
  const path = options.path ?? '/';
  checkOptions(path, options);
  const root = resolvePath(dir);
  const st = await stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new ErrNotFound(`build context ${root} is not a directory`, { details: { path: root } });
  const ignore = options.dockerignore === true ? await readDockerignore(root) : options.dockerignore || [];
  const hidden = ignore.length ? new PatternMatcher(ignore) : undefined;
  const tree = new Tree({
    root: () => Promise.resolve(root),
    ...(hidden && !hidden.empty ? { hidden } : {}),
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
  });
  const digest = await compute(tree, path, options);
  if (digest === undefined) {
    throw new ErrNotFound(`failed to calculate checksum of ${root}: ${JSON.stringify(path)}: not found`, { details: { path: root } });
  }
  return digest;
}
