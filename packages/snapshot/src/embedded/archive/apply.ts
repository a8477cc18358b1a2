/**
 * `applyLayer`: streams a layer (tar, tar+gzip, tar+zstd) into a directory, computing its diffID.
 *
 * Safety: every entry name is relative and free of `..`; no parent component is ever a symlink
 * (checked with lstat, cached per apply, and again by the kernel when the write queue resolves
 * each path beneath the target); files are created with O_EXCL|O_NOFOLLOW after whatever was at
 * their path is removed; hard links point inside the target; devices and fifos are made
 * as containerd makes them (skipped when mknod is not permitted) unless `allowDevices` is false.
 * Every failure is a typed error naming the entry: a refused entry ErrUnsafeEntry, a malformed
 * stream ErrCorruptLayer, a filesystem error the class of its errno (see `apply-errors.ts`), never
 * with a host path in its message. Memory is bounded whatever the layer: extended headers per entry
 * (tar reader), and small-file bodies waiting in the write queue (`write-queue.ts`), which writes
 * small files, directories and symlinks in layer order, many per native call. Nothing outside the
 * target is touched, but the target is left half-written on error: the applier never commits, and
 * the snapshot layer above it removes the active snapshot when apply fails.
 */
import type { ByteStream } from './tar-reader.js';
import { link, readdir } from 'node:fs/promises';
import { ErrCanceled, ErrCorruptLayer } from '@buildcache/errdefs';
import { ENTRY, PoolSha256, lsetxattr } from '@buildcache/sys';
import type { Logger } from 'pino';
import type { Compression } from '../../labels.js';
import { decompress } from './compression.js';
import { copyUp, modeBits, setXattrs, writeOverlayWhiteout, writeSpecial, writeStreamedFile } from './apply-entry.js';
import type { EntryContext, EntryMeta } from './apply-entry.js';
import { classifyName, entryComponents, isUnder, relPath, unsafe } from './safe-path.js';
import { SafeTree, isOverlayWhiteout } from './safe-tree.js';
import type { ApplyMode } from './safe-tree.js';
import { entryFailure } from './apply-errors.js';
import { corrupt } from './tar-format.js';
import type { TarHeader } from './tar-format.js';
import { TarReader } from './tar-reader.js';
import { WriteQueue } from './write-queue.js';

export type { ApplyMode } from './safe-tree.js';

/** Options of `applyLayer`. */
export interface ApplyOptions {
  /** Compression of the stream (from the media type); `auto` (default) detects it. */
  readonly compression?: Compression | 'auto';
  /** `plain` (default): OCI whiteouts delete. `overlay-upper`: target is an upperdir over `lowerDirs`. */
  readonly mode?: ApplyMode;
  /** The overlay's lowerdirs, nearest first (overlay-upper mode). */
  readonly lowerDirs?: readonly string[];
  /**
   * Create char/block devices and fifos (default true; a device that mknod is not permitted to make,
   * as for a normal user, is skipped with a debug log). False refuses them with ErrUnsafeEntry.
   * Overlay whiteouts are always allowed.
   */
  readonly allowDevices?: boolean;
  /** Restore uid/gid and setuid/setgid bits (default: when running as root). */
  readonly preserveOwners?: boolean;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
}

/** What `applyLayer` did. */
export interface ApplyResult {
  /** `sha256:<hex>` of the uncompressed tar stream. */
  readonly diffID: string;
  /** Bytes of uncompressed tar. */
  readonly size: number;
  /** Entries read (meta entries not counted). */
  readonly entries: number;
}

/** Files up to this size are read into memory and written through the write queue. */
const SMALL_FILE = 1 << 20;

/** Passes `source` through, hashing it on the thread pool and counting its bytes. */
async function* hashed(source: AsyncIterable<Buffer>, hash: PoolSha256, count: { n: number }): AsyncGenerator<Buffer> {
  for await (const c of source) {
    await hash.update(c);
    count.n += c.length;
    yield c;
  }
}

/** Applies one layer stream onto `target` (an existing directory). */
export async function applyLayer(stream: ByteStream, target: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  const hash = new PoolSha256();
  const count = { n: 0 };
  const reader = new TarReader(hashed(decompress(stream, options.compression ?? 'auto'), hash, count));
  const mode = options.mode ?? 'plain';
  const preserveOwners = options.preserveOwners ?? process.getuid?.() === 0;
  const logger = options.logger;
  const ctx: EntryContext = { preserveOwners, logger };
  const roots = [target, ...(options.lowerDirs ?? [])];
  const queue = new WriteQueue(target, (err, entry) => entryFailure(err, entry, roots, logger));
  const tree: SafeTree = new SafeTree(
    target, mode, options.lowerDirs ?? [], preserveOwners,
    (rel): Promise<void> => lsetxattr(tree.abs(rel), 'trusted.overlay.opaque', Buffer.from('y')),
    // a path this apply queued may still be in the queue; any other reflects the target already
    (rel?: string): Promise<void> => (rel === undefined || created.has(rel) ? queue.drain() : Promise.resolve()),
  );
  const created = new Set<string>();
  const dirMeta = new Map<string, EntryMeta>();
  /** An entry's metadata as the write queue restores it. */
  const metaOf = (m: EntryMeta): { mode: number; uid: number; gid: number; mtime: number; chown: boolean } =>
    ({ mode: modeBits(ctx, m.mode), uid: m.uid, gid: m.gid, mtime: m.mtime, chown: preserveOwners });
  const myUid = process.getuid?.() ?? -1;
  const myGid = process.getgid?.() ?? -1;
  let entries = 0;
  /** Forgets bookkeeping of `rel` (and, when a directory was removed there, of everything under it). */
  const forgetUnder = (rel: string, wasDir = true): void => {
    dirMeta.delete(rel);
    created.delete(rel);
    if (!wasDir) return;
    for (const k of dirMeta.keys()) if (isUnder(k, rel)) dirMeta.delete(k);
    for (const k of created) if (isUnder(k, rel)) created.delete(k);
  };

  /** Plain-mode opaque dir: removes what lower layers had, keeps what this layer wrote. */
  const prune = async (rel: string): Promise<void> => {
    await queue.drain();
    for (const name of await readdir(tree.abs(rel))) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (created.has(child) || tree.made.has(child)) {
        if ((await tree.stat(child))?.isDirectory()) await prune(child);
      } else {
        await tree.remove(child);
        forgetUnder(child);
      }
    }
  };

  const applyEntry = async (h: TarHeader): Promise<void> => {
    const kind = classifyName(h.name);
    if (kind.kind === 'root' || kind.kind === 'skip') {
      logger?.debug({ entry: h.name }, 'layer entry skipped');
      return;
    }
    if (kind.kind === 'whiteout') {
      const rel = relPath(kind.parts);
      const parents = kind.parts.slice(0, -1);
      if (mode === 'plain') {
        if (!(await tree.ensureDir(parents, h.name, false))) return;
        await tree.remove(rel);
        forgetUnder(rel);
      } else {
        await tree.ensureDir(parents, h.name);
        forgetUnder(rel, (await tree.clearFinal(rel, false)).removedDir);
        await queue.drain();
        await writeOverlayWhiteout(ctx, tree.abs(rel), h);
        created.add(rel); // an entry of the same name later in this layer must replace it
      }
      return;
    }
    if (kind.kind === 'opaque') {
      const rel = relPath(kind.dir);
      await tree.ensureDir(kind.dir, h.name);
      if (mode === 'plain') await prune(rel);
      else await tree.markOpaque(rel);
      return;
    }
    const rel = relPath(kind.parts);
    const parents = kind.parts.slice(0, -1);
    if ((h.type === 'char' || h.type === 'block' || h.type === 'fifo') && options.allowDevices === false) {
      throw unsafe(`${h.type === 'fifo' ? 'fifo' : `${h.type} device`} entries are not allowed`, h.name);
    }
    if (h.type === 'link') {
      await applyHardLink(h, rel, parents);
      return;
    }
    await tree.ensureDir(parents, h.name);
    // in a directory this apply created, only this layer's own entries can exist
    const parentRel = relPath(parents);
    const freshParent = parentRel !== '' && tree.fresh.has(parentRel);
    const cleared = await tree.clearFinal(rel, h.type === 'dir', freshParent && !created.has(rel));
    if (!cleared.kept) forgetUnder(rel, cleared.removedDir);
    created.add(rel);
    const path = tree.abs(rel);
    const meta = metaOf(h);
    switch (h.type) {
      case 'dir':
        if (!cleared.kept) {
          await queue.add({ kind: ENTRY.DIR, path: rel }, h.name);
          tree.madeDir(rel);
        }
        if (cleared.whiteout) await tree.markOpaque(rel);
        dirMeta.set(rel, { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
        break;
      case 'symlink':
        await queue.add({ kind: ENTRY.SYMLINK, path: rel, link: h.linkname, ...meta }, h.name);
        break;
      case 'file':
        if (!h.sparse && h.size <= SMALL_FILE) {
          const data = await reader.readBody();
          // the parent was created by this apply (no setgid), so root:root needs no chown
          const chown = preserveOwners && !(freshParent && h.uid === myUid && h.gid === myGid);
          await queue.add({ kind: ENTRY.FILE, path: rel, data, ...meta, chown }, h.name);
          break;
        }
        await queue.drain();
        await writeStreamedFile(ctx, path, h.sparse ? reader.sparseData() : reader.body(), h);
        return;
      default:
        await queue.drain();
        await writeSpecial(ctx, path, h);
        return;
    }
    // set once the entry is written (and owned: a chown would clear security.capability), without waiting for it
    if (h.xattrs.size) queue.after(() => setXattrs(ctx, path, h.xattrs, h.name), h.name);
  };

  const applyHardLink = async (h: TarHeader, rel: string, parents: string[]): Promise<void> => {
    let targetParts: string[];
    try {
      targetParts = entryComponents(h.linkname, 'hard link target');
    } catch {
      throw unsafe(`hard link target ${JSON.stringify(h.linkname)} is absolute or contains '..'`, h.name);
    }
    if (targetParts.length === 0) throw unsafe('hard link to the layer root', h.name);
    const targetRel = relPath(targetParts);
    if (targetRel === rel) throw corrupt('hard link to itself', h.name);
    await queue.drain();
    const inUpper = await tree.ensureDir(targetParts.slice(0, -1), h.name, false);
    let st = inUpper ? await tree.stat(targetRel) : undefined;
    if (st && isOverlayWhiteout(st) && mode === 'overlay-upper') st = undefined;
    if (!st) {
      const lower = await tree.lowerLookup(targetRel, h.name);
      if (!lower) throw corrupt(`hard link target ${JSON.stringify(h.linkname)} does not exist`, h.name);
      if (!lower.st.isFile() && !lower.st.isSymbolicLink()) throw unsafe('hard link to something that is not a file', h.name);
      await tree.ensureDir(targetParts.slice(0, -1), h.name);
      await tree.clearFinal(targetRel, false);
      await copyUp(ctx, lower.path, tree.abs(targetRel), lower.st);
    } else if (st.isDirectory()) throw unsafe('hard link to a directory', h.name);
    await tree.ensureDir(parents, h.name);
    forgetUnder(rel, (await tree.clearFinal(rel, false)).removedDir);
    await link(tree.abs(targetRel), tree.abs(rel));
    created.add(rel);
  };

  let current: string | undefined;
  try {
    for (let h = await reader.next(); h; h = await reader.next()) {
      if (options.signal?.aborted) throw new ErrCanceled('layer apply was cancelled', { cause: options.signal.reason });
      entries++;
      current = h.name;
      await applyEntry(h);
    }
    await reader.finish();
    // directories last, deepest first, so that writing their content does not change their mtime
    const dirs = [...dirMeta.keys()].sort((a, b) => b.split('/').length - a.split('/').length);
    await queue.drain();
    for (const rel of dirs) await queue.add({ kind: ENTRY.META, path: rel, ...metaOf(dirMeta.get(rel)!) }, rel);
    await queue.drain();
  } catch (err) {
    await queue.settle();
    await reader.cancel().catch(() => undefined);
    if (err instanceof ErrCorruptLayer && err.details.entry === undefined && current !== undefined) {
      // a stream that breaks inside an entry's data: name the entry being read
      throw new ErrCorruptLayer(`${err.message} (in or after entry ${JSON.stringify(current)})`, {
        cause: err.cause ?? err,
        details: { ...err.details, entry: current },
      });
    }
    throw entryFailure(err, current, roots, logger);
  }
  return { diffID: `sha256:${await hash.digest()}`, size: count.n, entries };
}
