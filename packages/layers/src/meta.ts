/**
 * The layer store's files: one directory per layer (`<root>/layers/<chainID hex>/`) holding
 * `layer.json` and `tar-split.gz`, one per read-write layer (`<root>/mounts/<name>/mount.json`), and
 * `<root>/tmp/` for work in progress, each entry named `<token>.<reg|rw|del>`: every cache record the
 * store creates has its token in its description, so that open can find and drop what an
 * interrupted registration, creation or deletion left.
 */
import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pLimit from 'p-limit';
import { fsyncPath, removeStalePartials, writeFileWhole } from '@buildcache/sys';

/** What the store keeps about one layer. */
export interface LayerMeta {
  readonly chainID: string;
  readonly diffID: string;
  /** The parent layer's chain ID. */
  readonly parent?: string;
  /** Layers in the chain up to and including this one. */
  readonly depth: number;
  /** Bytes of the uncompressed tar. */
  readonly size: number;
  /** The cache record holding the layer's snapshot. */
  readonly recordId: string;
  /** The blob it was registered from, when one was given. */
  readonly descriptor?: { readonly mediaType: string; readonly digest: string; readonly size: number };
  /** Whether `tar-split.gz` exists (exact re-export). */
  readonly tarSplit: boolean;
  /** References held by callers (children hold their parent implicitly). */
  refs: number;
  /** The token in the description of its record (and of its work and deletion entries in tmp). */
  readonly token?: string;
  /** The record was given by the caller (`registerRecord`): removing the layer only lets go of it. */
  readonly adopted?: boolean;
}

/** What `release` reports of each removed layer. */
export interface RemovedLayer {
  readonly chainID: string;
  readonly diffID: string;
  readonly size: number;
}

/** What the store keeps about one read-write layer. */
export interface MountMeta {
  readonly name: string;
  /** The chain ID of the layer under it. */
  readonly parent?: string;
  /** The mutable cache record of the container layer. */
  readonly mountID: string;
  /** The immutable cache record of the `-init` layer between the parent and the container layer. */
  readonly initID?: string;
  /** The token in the descriptions of its records. */
  readonly token: string;
}

export const hexOf = (digest: string): string => digest.slice(digest.indexOf(':') + 1);
export const layersDir = (root: string): string => join(root, 'layers');
export const tmpDir = (root: string): string => join(root, 'tmp');
export const layerDir = (root: string, chainID: string): string => join(layersDir(root), hexOf(chainID));
export const mountsDir = (root: string): string => join(root, 'mounts');
export const mountDir = (root: string, name: string): string => join(mountsDir(root), name);
/** The description of a record the store creates: what it is for, and the token that finds it again. */
export const describe = (what: string, token: string): string => `${what} [layers:${token}]`;

/** Writes `layer.json` into `dir` atomically and durably. */
export function writeMeta(dir: string, meta: LayerMeta): Promise<void> {
  return writeJson(join(dir, 'layer.json'), meta);
}

/** Writes `mount.json` into `dir` atomically and durably. */
export function writeMountMeta(dir: string, meta: MountMeta): Promise<void> {
  return writeJson(join(dir, 'mount.json'), meta);
}

/** Concurrent writers of one file each land whole (the last wins); a killed one leaves a partial file beside it, removed at open (`readAllMeta`). */
function writeJson(file: string, value: object): Promise<void> {
  return writeFileWhole(file, [Buffer.from(JSON.stringify(value))]);
}

/** How many layer or mount directories open reads at once. */
const OPEN_CONCURRENCY = 16;

/**
 * `file` (`layer.json`, `mount.json`) of every directory under `parent`, parsed. The partial files
 * that writers killed while rewriting it left beside it are removed; a live writer's (another
 * process may have the store open) stays.
 */
export async function readAllMeta<T>(parent: string, file: string): Promise<T[]> {
  const limit = pLimit(OPEN_CONCURRENCY);
  return Promise.all((await readdir(parent)).map((name) => limit(async () => {
    const dir = join(parent, name);
    await removeStalePartials(dir);
    return JSON.parse(await readFile(join(dir, file), 'utf8')) as T;
  })));
}

/** Renames `from` to `to` durably (both parent directories synced). */
export async function durableRename(from: string, to: string): Promise<void> {
  await fsyncPath(from).catch(() => undefined);
  await rename(from, to);
  await fsyncPath(dirname(to));
  if (dirname(from) !== dirname(to)) await fsyncPath(dirname(from));
}

/** Creates `dir` durably (its parent synced). */
export async function durableMkdir(dir: string): Promise<void> {
  await mkdir(dir);
  await fsyncPath(dirname(dir));
}
