/**
 * Turns the differ's changes into tar entries: parents before children (a changed path's
 * ancestors are always emitted, from the upper view), hard links within the layer as link
 * entries, deletions as `.wh.<name>` entries, file bodies streamed from disk.
 */
import { constants } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrFailedPrecondition } from '@buildcache/errdefs';
import { listXattrs } from './xattrs.js';
import { WHITEOUT_PREFIX } from './safe-path.js';
import type { EntryType } from './tar-format.js';
import type { TarWriter, TarWriteEntry } from './tar-writer.js';

/** Major/minor of a Linux dev_t (glibc's encoding). */
function devParts(rdev: bigint): { devmajor: number; devminor: number } {
  return {
    devmajor: Number(((rdev & 0xfff00n) >> 8n) | ((rdev & 0xfffff00000000000n) >> 32n)),
    devminor: Number((rdev & 0xffn) | ((rdev & 0xffffff00000n) >> 12n)),
  };
}

/** The tar type of a stat, or undefined for sockets (skipped, as tar does). */
export function entryType(st: BigIntStats): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined;
}

/** Reads a file's body of exactly `size` bytes (erroring if it changed size meanwhile). */
export async function* fileBody(path: string, size: number, entry: string): AsyncGenerator<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let pos = 0;
    while (pos < size) {
      const want = Math.min(size - pos, 1 << 20);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new ErrFailedPrecondition(`${entry} shrank while it was being read for a diff`, { details: { entry } });
      pos += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** Reads a small file whole. */
export async function readSmall(path: string, size: number, entry: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of fileBody(path, size, entry)) parts.push(c);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}

/** xattrs a diff never carries: overlay's own. */
export function keepXattr(name: string): boolean {
  return !name.startsWith('trusted.overlay.');
}

/** Emits entries for changes, keeping parent and hard-link bookkeeping. */
export class DiffWriter {
  private readonly emittedDirs = new Set<string>(['']);
  private readonly inodes = new Map<string, string>();

  constructor(
    private readonly tar: TarWriter,
    /** Root the ancestors of changes are read from (the upper view). */
    private readonly upperRoot: string,
  ) {}

  /** Emits not-yet-emitted ancestors of `rel` (from the upper view). */
  async parents(rel: string): Promise<void> {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.emittedDirs.has(dir)) continue;
      const path = join(this.upperRoot, dir);
      const st = await lstat(path, { bigint: true });
      const [xattrs] = await listXattrs([path]);
      await this.emit(dir, path, st, xattrs ?? new Map());
    }
  }

  /** Emits the deletion of `rel` as a whiteout entry (mode 0, owner 0:0, mtime 0). */
  async whiteout(rel: string): Promise<void> {
    await this.parents(rel);
    const slash = rel.lastIndexOf('/');
    const name = slash < 0 ? `${WHITEOUT_PREFIX}${rel}` : `${rel.slice(0, slash + 1)}${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`;
    await this.tar.add({ name, type: 'file', mode: 0, uid: 0, gid: 0, mtime: 0, size: 0 });
  }

  /**
   * Emits `rel` (at `path`) and its ancestors. `body` is a prefetched file body; without it a
   * regular file is streamed from disk.
   */
  async emit(rel: string, path: string, st: BigIntStats, xattrs: ReadonlyMap<string, Buffer>, body?: Promise<Buffer>): Promise<void> {
    await this.parents(rel);
    const type = entryType(st);
    if (!type) return;
    const kept = new Map([...xattrs].filter(([k]) => keepXattr(k)));
    const base: TarWriteEntry = {
      name: rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: Number(st.mtimeMs / 1000n),
      xattrs: kept,
    };
    if (type === 'dir') {
      this.emittedDirs.add(rel);
      await this.tar.add(base);
      return;
    }
    if (type === 'symlink') {
      await this.tar.add({ ...base, linkname: await readlink(path) });
      return;
    }
    if (type !== 'file') {
      await this.tar.add({ ...base, ...(type === 'fifo' ? {} : devParts(st.rdev)) });
      return;
    }
    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.inodes.get(key);
      if (first !== undefined) {
        body?.catch(() => undefined);
        await this.tar.add({ ...base, type: 'link', linkname: first });
        return;
      }
      this.inodes.set(key, rel);
    }
    const size = Number(st.size);
    await this.tar.add({ ...base, size }, body ? await body : size === 0 ? undefined : fileBody(path, size, rel));
  }
}
