/**
 * File trees for the apply/diff round trips: a spec of entries, building it on disk, packing it
 * with GNU tar (plain, gzip) and zstd, and listing a (mounted) tree for comparison.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { chmod, lchown, link, lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const execFileP = promisify(execFile);

/** One entry of a tree spec; parents are created 0755 root:root when missing. */
export type Spec =
  | { path: string; type: 'dir'; mode?: number; uid?: number; gid?: number }
  | { path: string; type: 'file'; content: string | Buffer; mode?: number; uid?: number; gid?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'hardlink'; target: string }
  /** A node made with mknod(1) (as a debootstrap'd rootfs holds in /dev). */
  | { path: string; type: 'char' | 'block'; major: number; minor: number; mode: number }
  | { path: string; type: 'fifo'; mode: number };

/** Builds `specs` under `root` in order. */
export async function buildTree(root: string, specs: readonly Spec[]): Promise<void> {
  await mkdir(root, { recursive: true });
  await chmod(root, 0o755);
  for (const s of specs) {
    const p = join(root, s.path);
    await mkdir(dirname(p), { recursive: true });
    switch (s.type) {
      case 'dir':
        await mkdir(p, { recursive: true });
        await lchown(p, s.uid ?? 0, s.gid ?? 0);
        await chmod(p, s.mode ?? 0o755);
        break;
      case 'file':
        await writeFile(p, s.content);
        await lchown(p, s.uid ?? 0, s.gid ?? 0);
        await chmod(p, s.mode ?? 0o644); // after chown, which clears setuid bits
        break;
      case 'symlink':
        await symlink(s.target, p);
        break;
      case 'hardlink':
        await link(join(root, s.target), p);
        break;
      case 'char':
      case 'block':
        await execFileP('mknod', ['-m', s.mode.toString(8), p, s.type === 'char' ? 'c' : 'b', String(s.major), String(s.minor)]);
        break;
      case 'fifo':
        await execFileP('mknod', ['-m', s.mode.toString(8), p, 'p']);
        break;
    }
  }
}

/** The layer files of one tree: the uncompressed tar, its gzip and zstd forms, and its diffID. */
export interface PackedLayer {
  readonly tar: Buffer;
  readonly gzip: Buffer;
  readonly zstd: Buffer;
  /** sha256 of the uncompressed tar. */
  readonly diffID: string;
}

/** Packs `dir` with GNU tar (`-cf`, `-czf`) and zstd; checks the gzip form decompresses to a tar of the same tree. */
export async function packLayer(dir: string, out: string): Promise<PackedLayer> {
  const args = ['--numeric-owner', '-C', dir, '.'];
  await execFileP('tar', ['-cf', `${out}.tar`, ...args]);
  await execFileP('tar', ['-czf', `${out}.tar.gz`, ...args]);
  await execFileP('zstd', ['-q', '-f', '-o', `${out}.tar.zst`, `${out}.tar`]);
  const tar = await readFile(`${out}.tar`);
  return { tar, gzip: await readFile(`${out}.tar.gz`), zstd: await readFile(`${out}.tar.zst`), diffID: sha256hex(tar) };
}

/** sha256 digest string of `data`. */
export function sha256hex(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The diffID of a gzip blob, computed independently with zlib. */
export function gunzipDiffID(gz: Uint8Array): string {
  return sha256hex(gunzipSync(gz));
}

/** What the comparison sees of one tree entry. */
export interface Listed {
  readonly type: string;
  readonly mode?: number;
  readonly uid: number;
  readonly gid: number;
  readonly size?: number;
  readonly sha?: string;
  readonly target?: string;
  readonly rdev?: number;
}

/** A tree listing: path → entry, plus the groups of paths sharing an inode (visible hard links). */
export interface Listing {
  readonly entries: Record<string, Listed>;
  readonly hardlinks: string[][];
}

function typeOf(st: Stats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Lists the tree under `root` (the root itself excluded), sorted by path. */
export async function listTree(root: string): Promise<Listing> {
  const entries: Record<string, Listed> = {};
  const inodes = new Map<number, string[]>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
        // overlayfs lists a whiteout left in a directory that exists only in the upper layer, but it cannot be stat'ed
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (!st) continue;
      const type = typeOf(st);
      const base = { type, uid: st.uid, gid: st.gid };
      if (type === 'symlink') entries[r] = { ...base, target: await readlink(p) };
      else if (type === 'file') {
        entries[r] = { ...base, mode: st.mode & 0o7777, size: st.size, sha: sha256hex(await readFile(p)) };
        if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), r]);
      } else entries[r] = { ...base, mode: st.mode & 0o7777, ...(type === 'char' || type === 'block' ? { rdev: st.rdev } : {}) };
      if (type === 'dir') await walk(r);
    }
  };
  await walk('');
  const hardlinks = [...inodes.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort((a, b) => a[0]!.localeCompare(b[0]!));
  return { entries, hardlinks };
}

/** Deterministic pseudo-random bytes (so every backend sees the same layer). */
export function pseudoRandom(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Layer 1 of the round trips: files, dirs, symlinks, hard links, modes, owners, setuid. */
export const LAYER1: readonly Spec[] = [
  { path: 'etc', type: 'dir' },
  { path: 'etc/config', type: 'file', content: 'hello\n' },
  { path: 'etc/config-hard', type: 'hardlink', target: 'etc/config' },
  { path: 'bin/tool', type: 'file', content: pseudoRandom(100_000, 1), mode: 0o755 },
  { path: 'bin/suid', type: 'file', content: '#!/bin/sh\n', mode: 0o4755 },
  { path: 'bin/sgid', type: 'file', content: 'g', mode: 0o2711, gid: 50 },
  { path: 'data/owned', type: 'file', content: 'owned', mode: 0o640, uid: 1234, gid: 5678 },
  { path: 'data/big', type: 'file', content: pseudoRandom(2_500_000, 2) },
  { path: 'data/empty', type: 'file', content: '' },
  { path: 'private', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
  { path: 'private/secret', type: 'file', content: 's3cret', mode: 0o600, uid: 1000, gid: 1000 },
  { path: 'sticky', type: 'dir', mode: 0o1777 },
  { path: 'link-rel', type: 'symlink', target: 'etc/config' },
  { path: 'link-abs', type: 'symlink', target: '/etc/config' },
  { path: 'dangling', type: 'symlink', target: 'nowhere/at/all' },
  { path: 'a/x', type: 'file', content: 'to be whited out' },
  { path: 'a/keep', type: 'file', content: 'keep me' },
  { path: 'opq/old1', type: 'file', content: 'old1' },
  { path: 'opq/sub/old2', type: 'file', content: 'old2' },
  { path: 'dir with space/f ü.txt', type: 'file', content: 'unicode' },
];

/** Layer 2: a whiteout `.wh.x`, an opaque dir, a changed file, a changed mode, new entries. */
export const LAYER2: readonly Spec[] = [
  { path: 'a/.wh.x', type: 'file', content: '' },
  { path: 'data/.wh.owned', type: 'file', content: '' },
  { path: 'opq/.wh..wh..opq', type: 'file', content: '' },
  { path: 'opq/new', type: 'file', content: 'new in opq' },
  { path: 'etc/config', type: 'file', content: 'hello v2\n' },
  { path: 'bin/tool', type: 'file', content: pseudoRandom(100_000, 1), mode: 0o700 },
  { path: 'newdir/deep/file', type: 'file', content: 'deep', mode: 0o664, uid: 7, gid: 8 },
  { path: 'newdir/h2', type: 'hardlink', target: 'newdir/deep/file' },
  { path: 'link-rel', type: 'symlink', target: 'a/keep' },
];

/** The tree layer 1 + layer 2 must give. */
export const FINAL: readonly Spec[] = [
  ...LAYER1.filter((s) => !['a/x', 'data/owned', 'opq/old1', 'opq/sub/old2', 'etc/config', 'etc/config-hard', 'bin/tool', 'link-rel'].includes(s.path)),
  { path: 'etc/config', type: 'file', content: 'hello v2\n' },
  { path: 'etc/config-hard', type: 'file', content: 'hello\n' },
  { path: 'bin/tool', type: 'file', content: pseudoRandom(100_000, 1), mode: 0o700 },
  { path: 'link-rel', type: 'symlink', target: 'a/keep' },
  { path: 'opq/new', type: 'file', content: 'new in opq' },
  { path: 'newdir/deep/file', type: 'file', content: 'deep', mode: 0o664, uid: 7, gid: 8 },
  { path: 'newdir/h2', type: 'hardlink', target: 'newdir/deep/file' },
];

/** Asserts two listings are equal, naming missing and extra paths first (a readable failure). */
export function assertSameTree(actual: Listing, expected: Listing, what: string): void {
  const a = new Set(Object.keys(actual.entries));
  const e = Object.keys(expected.entries);
  const missing = e.filter((k) => !a.has(k));
  const extra = [...a].filter((k) => !(k in expected.entries));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${what}: paths`);
  for (const k of e) assert.deepEqual(actual.entries[k], expected.entries[k], `${what}: ${k}`);
  assert.deepEqual(actual.hardlinks, expected.hardlinks, `${what}: hard links`);
}
