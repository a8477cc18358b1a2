/**
 * Checksums of a selection (BuildKit's include/exclude patterns and wildcards): the paths a
 * selection keeps, walked in sorted order, each contributing (path, digest) — a file's digest, a
 * directory's header only (its content may be partly excluded). Directories above a kept path
 * come with it. No path kept: sha256 of nothing; one path kept with the requested base name: its
 * own digest.
 */
import { createHash, type Hash } from 'node:crypto';
import { posix } from 'node:path';
import { EMPTY_DIGEST } from './header.js';
import { globToRegExp, type PatternMatcher } from './patterns.js';
import { childPath, cleanPath, type Tree } from './tree.js';

/** What a selection keeps. */
export interface Selection {
  readonly include?: PatternMatcher;
  readonly exclude?: PatternMatcher;
  readonly followLinks: boolean;
}

const GLOB_META = /[*?[\\]/;

/** Accumulates the kept (key, digest) pairs. */
class FileList {
  count = 0;
  first: { path: string; digest: string } | undefined;
  readonly #h: Hash = createHash('sha256').update('buildcache.filelist.v1\0');

  add(key: string, path: string, digest: string): void {
    if (this.count++ === 0) this.first = { path, digest };
    this.#h.update(`${key}\0${digest}\0`);
  }

  digest(requested: string): string {
    if (this.count === 0 || !this.first) return EMPTY_DIGEST;
    if (this.count === 1 && posix.basename(requested) === posix.basename(this.first.path)) return this.first.digest;
    return `sha256:${this.#h.digest('hex')}`;
  }
}

/** A directory header waiting to be added until something below it is kept. */
interface Pending {
  readonly key: string;
  readonly path: string;
  readonly header: string;
  added: boolean;
}

class Walker {
  constructor(
    private readonly tree: Tree,
    private readonly sel: Selection,
    private readonly list: FileList,
    /** The path keys are made relative to. */
    private readonly prefix: string,
  ) {}

  private keyOf(spelled: string): string {
    return posix.relative(this.prefix, spelled);
  }

  private kept(rel: string): { keep: boolean; excluded: boolean } {
    const { include, exclude } = this.sel;
    if (include && !include.matches(rel)) return { keep: false, excluded: false };
    if (exclude?.matches(rel)) return { keep: false, excluded: true };
    return { keep: true, excluded: false };
  }

  private flush(parents: readonly Pending[]): void {
    for (const p of parents) {
      if (p.added) continue;
      p.added = true;
      this.list.add(p.key, p.path, p.header);
    }
  }

  /**
   * Visits entry `p` (real path) spelled `spelled` (the path as asked, for keys), `rel` below the
   * matched root (`''` for the root itself).
   */
  async visit(p: string, spelled: string, rel: string, parents: Pending[], top: boolean, digest?: Promise<string | undefined>): Promise<void> {
    const node = await this.tree.stat(p);
    if (!node) return;
    const { keep, excluded } = this.kept(rel);
    if (node.t !== 'd') {
      if (!keep) return;
      const d = await (digest ?? this.fileDigest(p, spelled, top, node.t === 'l'));
      if (d === undefined) return;
      this.flush(parents);
      this.list.add(this.keyOf(spelled), spelled, d);
      return;
    }
    const header: Pending = { key: this.keyOf(spelled), path: spelled, header: await this.tree.header(p), added: false };
    if (keep) this.flush([...parents, header]);
    if (excluded && !this.sel.exclude?.hasNegations) return;
    const names = await this.tree.children(p);
    const below = [...parents, header];
    // Start the digests of the files this directory keeps (bounded by the tree), then add them in order.
    const nodes = await Promise.all(names.map((n) => this.tree.stat(childPath(p, n))));
    const prefetched = names.map((n, i) => {
      const child = nodes[i];
      const childRel = rel === '' ? n : `${rel}/${n}`;
      if (!child || child.t === 'd' || !this.kept(childRel).keep) return undefined;
      const d = this.tree.digest(childPath(p, n)).then((x) => x?.d);
      d.catch(() => undefined);
      return d;
    });
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      await this.visit(childPath(p, n), childPath(spelled, n), rel === '' ? n : `${rel}/${n}`, below, false, prefetched[i]);
    }
  }

  /** A kept non-directory's digest; a symlink matched at the top is followed with `followLinks`. */
  private async fileDigest(p: string, spelled: string, top: boolean, link: boolean): Promise<string | undefined> {
    if (top && link && this.sel.followLinks) {
      const target = await this.tree.resolve(spelled, true);
      return target === undefined ? undefined : (await this.tree.digest(target))?.d;
    }
    return (await this.tree.digest(p))?.d;
  }
}

/** The checksum of selection `sel` at `path` (not a wildcard): the base is resolved without following its last link. */
export async function selectionChecksum(tree: Tree, path: string, sel: Selection): Promise<string | undefined> {
  const spelled = cleanPath(path);
  const real = await tree.resolve(spelled, false);
  if (real === undefined) return undefined;
  const list = new FileList();
  await new Walker(tree, sel, list, spelled).visit(real, spelled, '', [], true);
  return list.digest(spelled);
}

/**
 * The checksum of wildcard `pattern` (Go's path.Match per component): its leading components
 * without wildcards are resolved (links followed), the rest is matched under them; each match is
 * kept with its subtree (less what `sel` leaves out).
 */
export async function wildcardChecksum(tree: Tree, pattern: string, sel: Selection): Promise<string> {
  const parts = cleanPath(pattern).split('/').filter(Boolean);
  const first = parts.findIndex((c) => GLOB_META.test(c));
  const list = new FileList();
  if (first < 0) return (await selectionChecksum(tree, pattern, sel)) ?? EMPTY_DIGEST;
  const prefix = '/' + parts.slice(0, first).join('/');
  const base = await tree.resolve(prefix, true);
  if (base === undefined) return EMPTY_DIGEST;
  const walker = new Walker(tree, sel, list, prefix);
  const res = parts.slice(first).map((c) => globToRegExp(c, false));
  const match = async (real: string, spelled: string, depth: number): Promise<void> => {
    const node = await tree.stat(real);
    if (node?.t !== 'd') return;
    for (const name of await tree.children(real)) {
      if (!res[depth]!.test(name)) continue;
      const [cr, cs] = [childPath(real, name), childPath(spelled, name)];
      if (depth === res.length - 1) await walker.visit(cr, cs, '', [], true);
      else await match((await tree.resolve(cr, true)) ?? cr, cs, depth + 1);
    }
  };
  await match(base, prefix, 0);
  return list.digest(pattern);
}
