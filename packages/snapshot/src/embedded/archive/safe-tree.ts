/**
 * The target directory as the applier sees it: every parent component of an entry is checked with
 * lstat to be a real directory (never a symlink, never followed), missing ones are created, and
 * the results are cached until something under them is removed. In overlay-upper mode the lower
 * dirs are consulted for parents that exist only below, and symlinks there are refused as well.
 * Directories the applier has queued for creation count as made; `flush` writes the applier's
 * queued entries before this tree looks at a path the queue may still be writing, or changes the
 * target, so what it sees is in layer order.
 */
import { lstat, mkdir, rm, unlink, chown, chmod, utimes } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { corrupt } from './tar-format.js';
import { isUnder, relPath, unsafe } from './safe-path.js';

/** How the applier writes: a plain directory, or an overlay upperdir over `lowerDirs`. */
export type ApplyMode = 'plain' | 'overlay-upper';

/** True for an overlay whiteout: a char device 0:0. */
export function isOverlayWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** Parent checking, creation and removal inside one target root. */
export class SafeTree {
  private readonly verified = new Set<string>(['']);
  /** Directories this apply created implicitly (as parents of entries). */
  readonly made = new Set<string>();
  /** Directories this apply created (empty when made, so no lstat is needed for new children). */
  readonly fresh = new Set<string>();
  /** Upper dirs under which lower dirs are hidden (made opaque or replacing a whiteout in this apply). */
  private readonly hidesLower = new Set<string>();

  constructor(
    readonly root: string,
    readonly mode: ApplyMode,
    readonly lowerDirs: readonly string[],
    private readonly preserveOwners: boolean,
    /** Makes an upper dir opaque (overlay-upper mode); called for dirs that replace a whiteout. */
    private readonly opaque: (rel: string) => Promise<void>,
    /** Writes the applier's queued entries: those at `rel` when given (before reading it), else all. */
    private readonly flush: (rel?: string) => Promise<void>,
  ) {}

  /** Makes `rel` opaque in the upper dir and remembers that lower content is hidden under it. */
  async markOpaque(rel: string): Promise<void> {
    this.hideLower(rel);
    await this.flush(rel);
    await this.opaque(rel);
  }

  /** Records `rel` as a directory this apply made (or queued), empty and checked. */
  madeDir(rel: string): void {
    this.fresh.add(rel);
    this.verified.add(rel);
  }

  /** Absolute path of a relative one. */
  abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /** lstat inside the target; undefined when missing. */
  async stat(rel: string): Promise<Stats | undefined> {
    await this.flush(rel);
    return lstatOrUndefined(this.abs(rel));
  }

  /** Marks `rel` as hiding lower content (overlay-upper: opaque, or a dir replacing a whiteout). */
  hideLower(rel: string): void {
    this.hidesLower.add(rel);
  }

  private lowerHidden(rel: string): boolean {
    for (const h of this.hidesLower) if (isUnder(rel, h)) return true;
    return false;
  }

  /**
   * What the lowers show at `rel` (overlay-upper mode): the first lower holding it, with its stat;
   * undefined when absent, whited out, or hidden. Parents in the lower are checked for symlinks.
   */
  async lowerLookup(rel: string, entry: string): Promise<{ path: string; st: Stats } | undefined> {
    if (this.mode !== 'overlay-upper' || rel === '' || this.lowerHidden(rel)) return undefined;
    const parts = rel.split('/');
    for (const lower of this.lowerDirs) {
      const st = await lstatOrUndefined(join(lower, rel));
      if (!st) continue;
      if (isOverlayWhiteout(st)) return undefined;
      for (let i = 1; i < parts.length; i++) {
        const p = await lstatOrUndefined(join(lower, relPath(parts.slice(0, i))));
        if (!p?.isDirectory()) throw unsafe('a parent directory in a lower layer is not a directory', entry);
      }
      return { path: join(lower, rel), st };
    }
    return undefined;
  }

  /**
   * Makes sure every component of `parts` is a real directory in the target, creating missing ones
   * when `create` (0755 root:root, or copying the lower dir's metadata in overlay-upper mode).
   * A symlink or non-directory component gives ErrUnsafeEntry. Returns false when a component is
   * missing and `create` is false.
   */
  async ensureDir(parts: readonly string[], entry: string, create = true): Promise<boolean> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = relPath(parts.slice(0, i));
      if (this.verified.has(rel)) continue;
      const st = await this.stat(rel);
      if (st?.isDirectory()) {
        this.verified.add(rel);
        continue;
      }
      if (st?.isSymbolicLink()) throw unsafe(`path component ${JSON.stringify(rel)} is a symlink`, entry);
      if (st && !(this.mode === 'overlay-upper' && isOverlayWhiteout(st))) {
        throw unsafe(`path component ${JSON.stringify(rel)} is not a directory`, entry);
      }
      const lower = st ? undefined : await this.lowerLookup(rel, entry);
      if (lower?.st.isSymbolicLink()) throw unsafe(`path component ${JSON.stringify(rel)} is a symlink in a lower layer`, entry);
      if (lower && !lower.st.isDirectory()) throw unsafe(`path component ${JSON.stringify(rel)} is not a directory in a lower layer`, entry);
      if (!create) return false;
      await this.flush(); // its parent may be a directory still queued
      if (st) await unlink(this.abs(rel)); // an overlay whiteout: the new dir hides what was below
      await mkdir(this.abs(rel), { mode: 0o755 });
      this.made.add(rel);
      this.fresh.add(rel);
      if (st) await this.markOpaque(rel);
      if (lower) {
        if (this.preserveOwners) await chown(this.abs(rel), lower.st.uid, lower.st.gid);
        await chmod(this.abs(rel), lower.st.mode & 0o7777);
        await utimes(this.abs(rel), lower.st.atime, lower.st.mtime);
      }
      this.verified.add(rel);
    }
    return true;
  }

  /** Forgets cached directories at and under `rel` (after removing or replacing it). */
  forget(rel: string): void {
    for (const v of this.verified) if (v !== '' && isUnder(v, rel)) this.verified.delete(v);
    for (const v of this.fresh) if (isUnder(v, rel)) this.fresh.delete(v);
  }

  /** Removes whatever is at `rel` (recursively for directories, never following symlinks). */
  async remove(rel: string, st?: Stats): Promise<void> {
    if (rel === '') throw corrupt('refusing to remove the layer root', rel);
    const s = st ?? (await this.stat(rel));
    if (!s) return;
    if (s.isDirectory()) {
      await this.flush(); // entries may still be queued under it
      await rm(this.abs(rel), { recursive: true, force: true });
      this.forget(rel);
    } else await unlink(this.abs(rel));
  }

  /**
   * Clears the final component for a new entry: keeps an existing directory when the entry is a
   * directory, otherwise removes what is there. `whiteout` tells that an overlay whiteout was
   * removed (a directory created there must be made opaque).
   */
  async clearFinal(rel: string, isDir: boolean, knownAbsent = false): Promise<{ kept: boolean; whiteout: boolean; removedDir: boolean }> {
    const st = knownAbsent ? undefined : await this.stat(rel);
    if (!st) return { kept: false, whiteout: false, removedDir: false };
    if (isDir && st.isDirectory()) {
      this.verified.add(rel);
      return { kept: true, whiteout: false, removedDir: false };
    }
    await this.remove(rel, st);
    return { kept: false, whiteout: this.mode === 'overlay-upper' && isOverlayWhiteout(st), removedDir: st.isDirectory() };
  }
}
