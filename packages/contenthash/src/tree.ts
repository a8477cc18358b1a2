/**
 * A directory tree being checksummed: entries read from a root directory (a record's read-only
 * mount, mounted only when needed, or a build context on the host), optionally remembered in a
 * table of nodes (persisted per record), optionally hiding `.dockerignore`d paths. Symlinks are
 * resolved inside the root: an absolute target or `..` never leaves it.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Stats } from 'node:fs';
import pLimit, { type LimitFunction } from 'p-limit';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { dirDigest, dirHeaderDigest, entryDigest, entryType, type EntryType } from './header.js';
import type { PatternMatcher } from './patterns.js';

/**
 * What is known of one entry: its type and symlink target; once complete, its digest `d` (for a
 * directory also its header digest `h` and sorted child names `c`: then its whole subtree is known).
 */
export interface Node {
  readonly t: EntryType;
  readonly l?: string;
  readonly h?: string;
  readonly d?: string;
  readonly c?: readonly string[];
}

/** How a tree is read. */
export interface TreeOptions {
  /** The root directory (called when the file system is needed first; may mount). */
  readonly root: () => Promise<string>;
  /** Nodes known already, by path (`/`, `/a/b`); filled in as entries are read. */
  readonly memo?: Map<string, Node>;
  /** Paths (relative to the root) that do not exist for this tree (`.dockerignore`). */
  readonly hidden?: PatternMatcher;
  /** How many files are read at once (default 16). */
  readonly concurrency?: number;
}

/** Symlinks followed in one resolution before giving up (Linux's MAXSYMLINKS is 40; BuildKit allows 255). */
const MAX_LINKS = 255;

/** `p`'s child `name`. */
export function childPath(p: string, name: string): string {
  return p === '/' ? `/${name}` : `${p}/${name}`;
}

/** A path cleaned lexically, absolute (`/` for the root). */
export function cleanPath(p: string): string {
  return posix.normalize('/' + p).replace(/(.)\/+$/, '$1');
}

/** `lstat` of `abs`, or undefined when nothing is there. */
async function lstatIfPresent(abs: string): Promise<Stats | undefined> {
  try {
    return await lstat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** Entries of one tree; see the module comment. */
export class Tree {
  /** Whether nodes were added to the memo (it needs saving). */
  added = false;
  readonly #o: TreeOptions;
  readonly #limit: LimitFunction;
  /** Directories that may still be walked concurrently; more are walked in line (bounded memory). */
  #dirSlots: number;
  #root: string | undefined;

  constructor(options: TreeOptions) {
    this.#o = options;
    const n = options.concurrency ?? 16;
    this.#limit = pLimit(n);
    this.#dirSlots = n;
  }

  async #abs(p: string): Promise<string> {
    this.#root ??= await this.#o.root();
    return p === '/' ? this.#root : join(this.#root, p);
  }

  #remember(p: string, node: Node): Node {
    if (this.#o.memo) {
      this.#o.memo.set(p, node);
      this.added = true;
    }
    return node;
  }

  /** Whether a path is hidden; an ignored directory stays visible while a `!` pattern may re-include inside it. */
  #hidden(p: string, dir: boolean): boolean {
    const h = this.#o.hidden;
    if (!h || p === '/' || !h.matches(p.slice(1))) return false;
    return !(dir && h.hasNegations);
  }

  /** Whether directory `p` is visible only for what `!` patterns may re-include in it. */
  #keptForNegations(p: string): boolean {
    const h = this.#o.hidden;
    return h !== undefined && p !== '/' && h.hasNegations && h.matches(p.slice(1));
  }

  /** Type and link target of entry `p` (not followed), or undefined when absent or hidden. */
  async stat(p: string): Promise<Node | undefined> {
    const known = this.#o.memo?.get(p);
    if (known) return known;
    const abs = await this.#abs(p);
    const st = await lstatIfPresent(abs);
    if (!st) return undefined;
    const t = entryType(st);
    if (!t || this.#hidden(p, t === 'd')) return undefined;
    if (t !== 'l') return this.#remember(p, { t });
    return this.#remember(p, { t, l: await readlink(abs) });
  }

  /**
   * The path `p` names once symlinks are resolved inside the root — every parent component, the
   * last one only with `followTrailing` — or undefined when nothing is there.
   */
  async resolve(p: string, followTrailing: boolean): Promise<string | undefined> {
    let pending = cleanPath(p).split('/').filter(Boolean);
    let cur: string[] = [];
    let links = 0;
    while (pending.length > 0) {
      const name = pending.shift()!;
      if (name === '.' || name === '') continue;
      if (name === '..') {
        cur.pop();
        continue;
      }
      const node = await this.stat('/' + [...cur, name].join('/'));
      if (!node) return undefined;
      if (node.t === 'l' && (pending.length > 0 || followTrailing)) {
        if (++links > MAX_LINKS) throw new ErrInvalidArgument(`too many levels of symbolic links resolving ${JSON.stringify(p)}`);
        const target = node.l ?? '';
        if (target.startsWith('/')) cur = [];
        pending = [...target.split('/'), ...pending];
        continue;
      }
      if (node.t !== 'd' && pending.length > 0) return undefined;
      cur.push(name);
    }
    return '/' + cur.join('/');
  }

  /** The complete node (with digest) of entry `p`, or undefined when absent or hidden. */
  async digest(p: string): Promise<Node | undefined> {
    const known = this.#o.memo?.get(p);
    if (known?.d) return known;
    const node = known ?? (await this.stat(p));
    if (!node) return undefined;
    return node.t === 'd' ? this.#dir(p) : this.#file(p);
  }

  /** A directory's own header digest. */
  async header(p: string): Promise<string> {
    const known = this.#o.memo?.get(p);
    if (known?.h) return known.h;
    const abs = await this.#abs(p);
    return this.#limit(async () => dirHeaderDigest(abs, await lstat(abs)));
  }

  /** The child names of directory `p`, sorted (hidden ones included: `stat` hides them). */
  async children(p: string): Promise<string[]> {
    const known = this.#o.memo?.get(p);
    if (known?.c) return [...known.c];
    return (await readdir(await this.#abs(p))).sort();
  }

  /** Digest of a non-directory entry (one lstat and one read, in a concurrency slot). */
  async #file(p: string): Promise<Node | undefined> {
    const abs = await this.#abs(p);
    const got = await this.#limit(async (): Promise<Node | 'dir' | undefined> => {
      const st = await lstatIfPresent(abs);
      if (!st) return undefined;
      const t = entryType(st);
      if (!t) return undefined;
      if (t === 'd') return 'dir'; // replaced by a directory meanwhile (or no d_type)
      if (this.#hidden(p, false)) return undefined;
      const { digest, link } = await entryDigest(abs, st, t);
      return { t, d: digest, ...(link !== undefined ? { l: link } : {}) };
    });
    if (got === 'dir') return this.#hidden(p, true) ? undefined : this.#dir(p);
    return got && this.#remember(p, got);
  }

  /** Digest of directory `p` over its visible children; undefined for an ignored directory left empty. */
  async #dir(p: string): Promise<Node | undefined> {
    const abs = await this.#abs(p);
    const h = await this.header(p);
    const entries = await readdir(abs, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const results: (readonly [string, string] | undefined)[] = new Array(entries.length);
    const running: Promise<void>[] = [];
    try {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const cp = childPath(p, e.name);
        const task = async (): Promise<void> => {
          const known = this.#o.memo?.get(cp);
          const node = known?.d ? known : e.isDirectory() ? (this.#hidden(cp, true) ? undefined : await this.#dir(cp)) : await this.#file(cp);
          results[i] = node?.d ? [e.name, node.d] : undefined;
        };
        if (!e.isDirectory()) running.push(task());
        else if (this.#dirSlots > 0) {
          this.#dirSlots--;
          running.push(task().finally(() => this.#dirSlots++));
        } else await task();
      }
      await Promise.all(running);
    } catch (err) {
      await Promise.allSettled(running);
      throw err;
    }
    const pairs = results.filter((r): r is readonly [string, string] => r !== undefined);
    if (pairs.length === 0 && this.#keptForNegations(p)) return undefined;
    return this.#remember(p, { t: 'd', h, d: dirDigest(h, pairs), c: pairs.map((x) => x[0]) });
  }
}
