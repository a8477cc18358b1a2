/**
 * The differ core: the layer tar of the changes from a lower tree to an upper one, in two ways
 * that give byte-identical output for the same change:
 *  - generic: walk two directory trees side by side (e.g. both mounted read-only);
 *  - overlay fast path: walk only an overlay upperdir, looking paths up in the lower view;
 *    overlay whiteouts and opaque dirs are turned into the same per-name `.wh.` entries the
 *    generic walk produces. Upper dirs with redirect or metacopy xattrs are refused
 *    (ErrNotImplemented), so the caller falls back to the generic walk.
 *
 * Change rule (both ways): a path is changed when its type, mode, uid or gid differ; for
 * non-directories also size, link target, device number, or mtime (to the nanosecond); when
 * both mtimes have a zero nanosecond part (e.g. extracted from a tar) the contents are compared
 * instead of the sub-second part. xattr-only changes are not detected. Deleted paths become
 * whiteouts (not their children). The ancestors of any change are emitted too.
 *
 * Order: depth first, siblings sorted by the bytes of their names, a whiteout at the position of
 * the name it deletes; no `.wh..wh..opq` is ever written. Headers follow `TarWriter`'s rule.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrCanceled, ErrNotImplemented } from '@buildcache/errdefs';
import pLimit from 'p-limit';
import { DiffWriter, fileBody, readSmall } from './diff-writer.js';
import { listXattrs } from './xattrs.js';
import { TarWriter } from './tar-writer.js';

/** What to compare: two trees, or an overlay upperdir over the lower view. */
export type DiffSource =
  | { readonly kind: 'trees'; readonly lower?: string; readonly upper: string }
  | { readonly kind: 'overlay-upper'; readonly upperDir: string; readonly lower?: string };

/** Options of `writeDiff`. */
export interface DiffOptions {
  readonly signal?: AbortSignal;
  /** Concurrent stats and reads per directory (default 16). */
  readonly concurrency?: number;
}

/** The diffID and size of a written diff. */
export interface DiffResult {
  readonly diffID: string;
  readonly size: number;
}

const PREFETCH = 256 * 1024;
const WINDOW = 32;

async function lstatOrUndefined(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

async function listSorted(dir: string | undefined): Promise<string[]> {
  if (dir === undefined) return [];
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [] as string[];
    throw err;
  });
  return names
    .map((n) => [n, Buffer.from(n)] as const)
    .sort((a, b) => Buffer.compare(a[1], b[1]))
    .map(([n]) => n);
}

const isWhiteout = (st: BigIntStats): boolean => st.isCharacterDevice() && st.rdev === 0n;

async function sameContent(a: string, b: string, size: number): Promise<boolean> {
  if (size === 0) return true;
  const ia = fileBody(a, size, a)[Symbol.asyncIterator]();
  const ib = fileBody(b, size, b)[Symbol.asyncIterator]();
  try {
    for (;;) {
      const [ra, rb] = await Promise.all([ia.next(), ib.next()]);
      if (ra.done || rb.done) return ra.done === rb.done;
      if (!ra.value.equals(rb.value)) return false;
    }
  } finally {
    await ia.return?.(undefined);
    await ib.return?.(undefined);
  }
}

/** The change rule documented at the top of this file. */
async function changed(l: BigIntStats, lPath: string, u: BigIntStats, uPath: string): Promise<boolean> {
  if ((l.mode & 0o170000n) !== (u.mode & 0o170000n)) return true;
  if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid) return true;
  if (u.isDirectory()) return false;
  if (l.size !== u.size || l.rdev !== u.rdev) return true;
  if (u.isSymbolicLink() && (await readlink(lPath)) !== (await readlink(uPath))) return true;
  const ls = l.mtimeNs / 1_000_000_000n;
  const us = u.mtimeNs / 1_000_000_000n;
  if (ls !== us) return true;
  const lns = l.mtimeNs % 1_000_000_000n;
  const uns = u.mtimeNs % 1_000_000_000n;
  if (lns === 0n && uns === 0n) return u.isFile() ? !(await sameContent(lPath, uPath, Number(u.size))) : false;
  return lns !== uns;
}

interface Decision {
  readonly rel: string;
  readonly action: 'whiteout' | 'emit' | 'none';
  readonly uPath?: string;
  readonly ust?: BigIntStats;
  readonly xattrs?: ReadonlyMap<string, Buffer>;
  /** How to continue below a directory: compare with a lower dir (or none), or walk the upperdir. */
  readonly recurse?: { readonly how: 'compare'; readonly lower: string | undefined; readonly skipWhiteouts: boolean } | { readonly how: 'upper' };
}

class Walker {
  private readonly limit: ReturnType<typeof pLimit>;

  constructor(
    private readonly writer: DiffWriter,
    private readonly lowerRoot: string | undefined,
    private readonly options: DiffOptions,
  ) {
    this.limit = pLimit(options.concurrency ?? 16);
  }

  private child(rel: string, name: string): string {
    return rel === '' ? name : `${rel}/${name}`;
  }

  /** Emits the decisions of one directory in order, prefetching small bodies, recursing below. */
  private async run(decisions: Decision[], upperRoot: string): Promise<void> {
    const bodies = new Map<number, Promise<Buffer>>();
    const prefetch = (i: number): void => {
      const d = decisions[i];
      if (!d || d.action !== 'emit' || !d.ust?.isFile() || d.ust.size > BigInt(PREFETCH) || bodies.has(i)) return;
      const p = this.limit(() => readSmall(d.uPath!, Number(d.ust!.size), d.rel));
      p.catch(() => undefined);
      bodies.set(i, p);
    };
    for (let i = 0; i < Math.min(WINDOW, decisions.length); i++) prefetch(i);
    for (let i = 0; i < decisions.length; i++) {
      if (this.options.signal?.aborted) throw new ErrCanceled('diff was cancelled', { cause: this.options.signal.reason });
      prefetch(i + WINDOW);
      const d = decisions[i]!;
      if (d.action === 'whiteout') await this.writer.whiteout(d.rel);
      else if (d.action === 'emit') await this.writer.emit(d.rel, d.uPath!, d.ust!, d.xattrs ?? new Map(), bodies.get(i));
      bodies.delete(i);
      const r = d.recurse;
      if (!r) continue;
      if (r.how === 'upper') await this.walkUpper(d.rel, upperRoot);
      else await this.compare(d.rel, d.uPath!, r.lower, r.skipWhiteouts, upperRoot);
    }
  }

  /** Generic comparison of upper dir `uDir` with lower dir `lDir` (none: everything is added). */
  async compare(rel: string, uDir: string, lDir: string | undefined, skipWhiteouts: boolean, upperRoot: string): Promise<void> {
    const [uNames, lNames] = await Promise.all([listSorted(uDir), listSorted(lDir)]);
    const ustats = await Promise.all(uNames.map((n) => this.limit(() => lstat(join(uDir, n), { bigint: true }))));
    const upper = new Map<string, BigIntStats>();
    uNames.forEach((n, i) => {
      const st = ustats[i]!;
      if (!(skipWhiteouts && isWhiteout(st))) upper.set(n, st);
    });
    const lowerSet = new Set(lNames);
    const names = [...new Set([...upper.keys(), ...lNames])]
      .map((n) => [n, Buffer.from(n)] as const)
      .sort((a, b) => Buffer.compare(a[1], b[1]))
      .map(([n]) => n);
    const xattrs = await listXattrs([...upper.keys()].map((n) => join(uDir, n)));
    const xByName = new Map([...upper.keys()].map((n, i) => [n, xattrs[i]!]));
    const decisions = await Promise.all(
      names.map((name) =>
        this.limit(async (): Promise<Decision> => {
          const childRel = this.child(rel, name);
          const ust = upper.get(name);
          if (!ust) return { rel: childRel, action: 'whiteout' };
          const uPath = join(uDir, name);
          const lPath = lDir !== undefined && lowerSet.has(name) ? join(lDir, name) : undefined;
          const lst = lPath ? await lstat(lPath, { bigint: true }) : undefined;
          const emit = !lst || (await changed(lst, lPath!, ust, uPath));
          const recurse = ust.isDirectory()
            ? ({ how: 'compare', lower: lst?.isDirectory() ? lPath : undefined, skipWhiteouts } as const)
            : undefined;
          return { rel: childRel, action: emit ? 'emit' : 'none', uPath, ust, xattrs: xByName.get(name)!, ...(recurse ? { recurse } : {}) };
        }),
      ),
    );
    await this.run(decisions, upperRoot);
  }

  /** Fast path: walks the overlay upperdir at `rel`; what is not in it is unchanged. */
  async walkUpper(rel: string, upperDir: string): Promise<void> {
    const uDir = rel === '' ? upperDir : join(upperDir, rel);
    const names = await listSorted(uDir);
    const paths = names.map((n) => join(uDir, n));
    const [ustats, xattrs] = await Promise.all([
      Promise.all(paths.map((p) => this.limit(() => lstat(p, { bigint: true })))),
      listXattrs(paths),
    ]);
    const decisions = await Promise.all(
      names.map((name, i) =>
        this.limit(async (): Promise<Decision> => {
          const childRel = this.child(rel, name);
          const ust = ustats[i]!;
          const ux = xattrs[i]!;
          if (ux.has('trusted.overlay.redirect') || ux.has('trusted.overlay.metacopy')) {
            throw new ErrNotImplemented(`overlay upperdir uses redirect_dir or metacopy at ${childRel}`, { details: { path: paths[i]! } });
          }
          const lPath = this.lowerRoot === undefined ? undefined : join(this.lowerRoot, childRel);
          const lst = lPath === undefined ? undefined : await lstatOrUndefined(lPath);
          if (isWhiteout(ust)) return { rel: childRel, action: lst ? 'whiteout' : 'none' };
          const uPath = paths[i]!;
          const emit = !lst || (await changed(lst, lPath!, ust, uPath));
          let recurse: Decision['recurse'];
          if (ust.isDirectory()) {
            const opaque = ux.get('trusted.overlay.opaque')?.toString() === 'y';
            recurse = lst?.isDirectory()
              ? opaque
                ? { how: 'compare', lower: lPath, skipWhiteouts: true }
                : { how: 'upper' }
              : { how: 'compare', lower: undefined, skipWhiteouts: true };
          }
          return { rel: childRel, action: emit ? 'emit' : 'none', uPath, ust, xattrs: ux, ...(recurse ? { recurse } : {}) };
        }),
      ),
    );
    await this.run(decisions, upperDir);
  }
}

/**
 * Writes the layer tar of the changes described by `source` to `sink` (which may apply
 * backpressure by returning a promise) and returns its diffID and size.
 */
export async function writeDiff(source: DiffSource, sink: (chunk: Buffer) => Promise<void> | void, options: DiffOptions = {}): Promise<DiffResult> {
  const hash = createHash('sha256');
  const tar = new TarWriter(async (chunk) => {
    hash.update(chunk);
    await sink(chunk);
  });
  const upperRoot = source.kind === 'trees' ? source.upper : source.upperDir;
  const walker = new Walker(new DiffWriter(tar, upperRoot), source.lower, options);
  if (source.kind === 'trees') await walker.compare('', source.upper, source.lower, false, source.upper);
  else await walker.walkUpper('', source.upperDir);
  await tar.finish();
  return { diffID: `sha256:${hash.digest('hex')}`, size: tar.bytes };
}
