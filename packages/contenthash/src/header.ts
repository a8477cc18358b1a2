/**
 * The digest of one filesystem entry: a tarsum-like header (type, mode, uid, gid, size, link
 * target, device numbers, xattrs — never times nor the name) followed, for a regular file, by its
 * bytes. A directory's own header digest is combined with its children's by tree.ts.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { lgetxattr, llistxattr } from '@buildcache/sys';

/** Kinds of entry: regular file, directory, symlink, char/block device, fifo. */
export type EntryType = 'f' | 'd' | 'l' | 'c' | 'b' | 'p';

/** The entry type of a stat result; undefined for what a layer cannot hold (sockets). */
export function entryType(st: Stats): EntryType | undefined {
  if (st.isFile()) return 'f';
  if (st.isDirectory()) return 'd';
  if (st.isSymbolicLink()) return 'l';
  if (st.isCharacterDevice()) return 'c';
  if (st.isBlockDevice()) return 'b';
  if (st.isFIFO()) return 'p';
  return undefined;
}

/** Xattrs that say nothing about content: the LSM label, and overlayfs' own bookkeeping. */
function ignoredXattr(name: string): boolean {
  return name === 'security.selinux' || name.startsWith('trusted.overlay.');
}

async function xattrs(path: string): Promise<[string, Buffer][]> {
  let names: Buffer[];
  try {
    names = await llistxattr(path);
  } catch {
    return []; // a filesystem without xattrs
  }
  const out: [string, Buffer][] = [];
  for (const raw of names) {
    const name = raw.toString('latin1');
    if (ignoredXattr(name)) continue;
    try {
      out.push([name, await lgetxattr(path, raw)]);
    } catch {
      // removed meanwhile
    }
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Linux's major and minor numbers of a device number (glibc's encoding). */
function deviceNumbers(rdev: number): [number, number] {
  const lo = rdev >>> 0;
  const hi = Math.floor(rdev / 2 ** 32) >>> 0;
  const major = ((lo >>> 8) & 0xfff) | (hi & 0xfffff000);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20);
  return [major >>> 0, minor >>> 0];
}

/** Writes the header of entry `path` (stat `st`, type `t`, link target `link`) into `h`. */
async function writeHeader(h: Hash, path: string, st: Stats, t: EntryType, link: string): Promise<void> {
  const dev = t === 'c' || t === 'b';
  const [major, minor] = dev ? deviceNumbers(st.rdev) : [0, 0];
  const fields = [
    'buildcache.contenthash.v1',
    `type=${t}`,
    `mode=${(st.mode & 0o7777).toString(8)}`,
    `uid=${st.uid}`,
    `gid=${st.gid}`,
    `size=${t === 'f' ? st.size : 0}`,
    `link=${link}`,
    `devmajor=${major}`,
    `devminor=${minor}`,
  ];
  h.update(fields.join('\0') + '\0');
  for (const [name, value] of await xattrs(path)) {
    h.update(`xattr=${name}\0${value.length}\0`);
    h.update(value);
  }
  h.update('\n');
}

const CHUNK = 1 << 20;

/**
 * The digest of entry `path` that is not a directory (stat `st`): header, then the bytes of a
 * regular file. For a symlink, also its target.
 */
export async function entryDigest(path: string, st: Stats, t: EntryType): Promise<{ digest: string; link?: string }> {
  const h = createHash('sha256');
  const link = t === 'l' ? await readlink(path) : '';
  await writeHeader(h, path, st, t, link);
  if (t === 'f' && st.size > 0) {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, st.size));
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
  }
  return { digest: `sha256:${h.digest('hex')}`, ...(t === 'l' ? { link } : {}) };
}

/** The digest of a directory's own header (mode, owner, xattrs). */
export async function dirHeaderDigest(path: string, st: Stats): Promise<string> {
  const h = createHash('sha256');
  await writeHeader(h, path, st, 'd', '');
  return `sha256:${h.digest('hex')}`;
}

/** A directory's digest: its header digest and its (name, child digest) pairs in name order. */
export function dirDigest(header: string, children: readonly (readonly [string, string])[]): string {
  const h = createHash('sha256').update(`dir\0${header}\0`);
  for (const [name, digest] of children) h.update(`${name}\0${digest}\0`);
  return `sha256:${h.digest('hex')}`;
}

/** sha256 of nothing: the checksum of an empty selection. */
export const EMPTY_DIGEST = `sha256:${createHash('sha256').digest('hex')}`;
