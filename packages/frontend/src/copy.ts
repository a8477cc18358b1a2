/**
 * COPY from the build context: sources resolved in the context (wildcards, `.dockerignore`, never
 * outside it), then copied into the step's mounted snapshot with Docker's rules — a directory
 * source copies its contents, a file lands in DEST or in DEST/ when DEST is a directory — keeping
 * modes and modification times, owned by root or by `--chown`.
 */
import { constants, type Stats } from 'node:fs';
import { chmod, copyFile, lchown, lstat, lutimes, mkdir, readdir, readlink, rm, symlink, utimes } from 'node:fs/promises';
import { join, posix } from 'node:path';
import pLimit from 'p-limit';
import { ErrCopySource } from '@buildcache/errdefs';
import type { PatternMatcher } from '@buildcache/contenthash';
import { scopedPath } from './scoped-path.js';
import { resolveUser } from './users.js';

/** A source path in the context that a COPY names (a pattern may give several). */
export interface CopySource {
  /** Path relative to the context root, `/`-separated (`.` for the root itself). */
  readonly rel: string;
  readonly isDir: boolean;
}

const WILDCARD = /[*?[]/;

function notFound(path: string): ErrCopySource {
  return new ErrCopySource(`failed to compute cache key: "${path}": not found`, { details: { path } });
}

/** Go filepath.Match for one path component. */
function componentRegex(pattern: string): RegExp {
  const re = pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\[!/g, '[^');
  return new RegExp(`^${re}$`);
}

/** The context paths `pattern` names, in order; none → ErrCopySource "not found"; `../x` → outside the context. */
export async function resolveSources(context: string, pattern: string, ignore: PatternMatcher): Promise<CopySource[]> {
  const clean = posix.normalize(pattern.replace(/^\/+/, '')).replace(/\/+$/, '') || '.';
  if (clean === '..' || clean.startsWith('../')) {
    throw new ErrCopySource(`failed to compute cache key: "${pattern}": outside of the build context; COPY can only use files inside the context directory`, {
      details: { path: pattern },
    });
  }
  const parts = clean === '.' ? [] : clean.split('/');
  let found: string[] = [''];
  for (const part of parts) {
    const next: string[] = [];
    for (const base of found) {
      if (!WILDCARD.test(part)) {
        next.push(base ? `${base}/${part}` : part);
        continue;
      }
      const names = await readdir(join(context, base)).catch(() => [] as string[]);
      const re = componentRegex(part);
      for (const n of names.sort()) if (re.test(n)) next.push(base ? `${base}/${n}` : n);
    }
    found = next;
  }
  const out: CopySource[] = [];
  for (const rel of found) {
    const r = rel || '.';
    if (r !== '.' && ignore.matches(r)) continue;
    const st = await lstat(join(context, r)).catch(() => undefined);
    if (st) out.push({ rel: r, isDir: st.isDirectory() });
  }
  if (out.length === 0) throw notFound(pattern);
  return out;
}

/** What one COPY writes, and how. */
export interface CopyRequest {
  readonly context: string;
  readonly sources: readonly CopySource[];
  /** Absolute destination in the rootfs; a trailing `/` means a directory. */
  readonly dest: string;
  readonly chown?: string;
  readonly chmod?: number;
  readonly ignore: PatternMatcher;
}

/** Copies into `rootfs` (a mounted, writable snapshot); returns how many entries were written. */
export async function copyInto(rootfs: string, req: CopyRequest): Promise<number> {
  let owner = { uid: 0, gid: 0 };
  if (req.chown !== undefined) {
    const u = await resolveUser(rootfs, req.chown);
    owner = { uid: u.uid, gid: req.chown.includes(':') || !/^\d+$/.test(req.chown) ? u.gid : u.uid };
  }
  const destDir = req.dest.endsWith('/') || req.sources.length > 1 || (await isDirIn(rootfs, req.dest));
  const writer = new TreeWriter(rootfs, req, owner);
  for (const src of req.sources) {
    if (src.isDir) await writer.tree(src.rel, req.dest);
    else await writer.entry(src.rel, destDir ? posix.join(req.dest, posix.basename(src.rel)) : req.dest);
  }
  await writer.done();
  return writer.count;
}

async function isDirIn(rootfs: string, path: string): Promise<boolean> {
  const st = await lstat(await scopedPath(rootfs, path)).catch(() => undefined);
  return st?.isDirectory() ?? false;
}

/** Writes entries under one rootfs with bounded concurrency; directories' times are set last. */
class TreeWriter {
  count = 0;
  private readonly limit = pLimit(16);
  private readonly pending: Promise<void>[] = [];
  private readonly dirTimes: [string, Date, Date][] = [];
  /** Host paths of the directories this COPY made sure of, by in-container path. */
  private readonly dirs = new Map<string, string>();
  private error: unknown;

  constructor(
    private readonly rootfs: string,
    private readonly req: CopyRequest,
    private readonly owner: { uid: number; gid: number },
  ) {}

  /** Copies directory `rel`'s contents into `dest`, one directory listing at a time. */
  async tree(rel: string, dest: string): Promise<void> {
    const host = await this.dir(dest, await lstat(join(this.req.context, rel)));
    const entries = (await readdir(join(this.req.context, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const child = rel === '.' ? e.name : `${rel}/${e.name}`;
      const ignored = this.req.ignore.matches(child);
      if (e.isDirectory()) {
        if (!ignored || this.req.ignore.hasNegations) await this.tree(child, posix.join(dest, e.name));
      } else if (!ignored) {
        this.queue(child, join(host, e.name), posix.join(dest, e.name));
        if (this.pending.length >= 256) await this.flush();
      }
    }
  }

  /** Copies the non-directory `rel` to `dest`, making its parent directories. */
  async entry(rel: string, dest: string): Promise<void> {
    const parent = await this.mkdirs(posix.dirname(dest));
    this.queue(rel, join(parent, posix.basename(dest)), dest);
  }

  private queue(rel: string, host: string, dest: string): void {
    this.pending.push(
      this.limit(() => this.file(rel, host, dest)).catch((err: unknown) => {
        this.error ??= err;
      }),
    );
  }

  private async flush(): Promise<void> {
    await Promise.all(this.pending.splice(0));
    if (this.error !== undefined) throw this.error;
  }

  /** Makes directory `dest` (in-container path) like the source `st`, owned by the COPY's owner; returns its host path. */
  private async dir(dest: string, st: Stats): Promise<string> {
    const host = await scopedPath(this.rootfs, dest);
    const old = await lstat(host).catch(() => undefined);
    if (old && !old.isDirectory()) await rm(host, { force: true });
    if (!old?.isDirectory()) {
      await this.mkdirs(posix.dirname(dest));
      await mkdir(host);
    }
    await lchown(host, this.owner.uid, this.owner.gid);
    await chmod(host, this.req.chmod ?? st.mode & 0o7777);
    this.dirTimes.push([host, st.atime, st.mtime]);
    this.dirs.set(dest, host);
    this.count++;
    return host;
  }

  /** Parent directories of a destination, created root-owned 0755 when missing (as Docker does); returns the host path. */
  private async mkdirs(dir: string): Promise<string> {
    const known = this.dirs.get(dir);
    if (known) return known;
    const host = await scopedPath(this.rootfs, dir);
    const st = await lstat(host).catch(() => undefined);
    if (!st?.isDirectory()) {
      if (st) await rm(host, { force: true });
      await this.mkdirs(posix.dirname(dir));
      await mkdir(host, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
    this.dirs.set(dir, host);
    return host;
  }

  /** Copies one file or symlink (other types are not copied) to `host`, replacing what is there but a directory. */
  private async file(rel: string, host: string, dest: string): Promise<void> {
    const src = join(this.req.context, rel);
    const st = await lstat(src);
    if (!st.isFile() && !st.isSymbolicLink()) return;
    this.count++;
    // Created exclusively: an existing entry, even a symlink, is never written through.
    const create = st.isSymbolicLink() ? async () => symlink(await readlink(src), host) : () => copyFile(src, host, constants.COPYFILE_EXCL);
    await create().catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
      if ((await lstat(host)).isDirectory()) throw new ErrCopySource(`cannot copy ${rel} to ${dest}: a directory is in the way`, { details: { path: rel } });
      await rm(host, { force: true });
      await create();
    });
    await lchown(host, this.owner.uid, this.owner.gid);
    if (st.isSymbolicLink()) return lutimes(host, st.atime, st.mtime);
    await chmod(host, this.req.chmod ?? st.mode & 0o7777);
    await utimes(host, st.atime, st.mtime);
  }

  /** Waits for every queued copy, then sets directory times (children changed them). */
  async done(): Promise<void> {
    await this.flush();
    for (const [host, atime, mtime] of this.dirTimes.reverse()) await utimes(host, atime, mtime);
  }
}
