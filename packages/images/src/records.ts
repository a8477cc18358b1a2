/**
 * The image store's files under its root: `images/<id hex>.json` (one record per image, rewritten
 * atomically), `pending/<nonce>.json` (a journal for each import or removal in progress, so that
 * `open` can undo or finish one a crash interrupted) and `tmp/` (archives being read).
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { fsyncPath, removeStalePartials, writeFileWhole } from '@buildcache/sys';
import { join } from 'node:path';

/** One layer of an image record. */
export interface RecordLayer {
  readonly chainID: string;
  readonly diffID: string;
  /** Bytes of its uncompressed tar. */
  readonly size: number;
}

/** What the store keeps about one image. */
export interface ImageRecord {
  /** The config's digest. */
  readonly id: string;
  /** Full names (`docker.io/library/debian:bookworm`). */
  names: string[];
  readonly layers: readonly RecordLayer[];
  /** The config, base64 (exact bytes). */
  readonly config: string;
  /** The original OCI manifest, base64, when the archive had one. */
  readonly manifest?: string;
  /** The import that wrote the record (matches its journal). */
  readonly nonce: string;
  /** Import order: a name taken by a later import moves to it. */
  readonly seq: number;
}

/**
 * A journal: the layer reference counts to return to unless the record `nonce` names exists (import,
 * add), or after it is gone (removal). An `add` names layers by cache record (`recordId`) until it
 * knows their chain IDs, and its image ID only once its layers are registered.
 */
export interface Journal {
  readonly nonce: string;
  readonly kind: 'import' | 'remove' | 'add';
  readonly id: string;
  readonly refs: readonly { readonly chainID?: string; readonly recordId?: string; readonly refs: number }[];
}

export const hex = (digest: string): string => digest.slice(digest.indexOf(':') + 1);

/** Writes `value` as JSON to `dir/name` atomically and durably (concurrent writers each land whole). */
export function writeJSON(dir: string, name: string, value: unknown): Promise<void> {
  return writeFileWhole(join(dir, name), [Buffer.from(JSON.stringify(value))]);
}

/** Removes `dir/name` durably. */
export async function removeFile(dir: string, name: string): Promise<void> {
  await rm(join(dir, name), { force: true });
  await fsyncPath(dir);
}

/** Every `*.json` in `dir`, parsed (what a killed writer left is removed). */
export async function readAll<T>(dir: string): Promise<T[]> {
  await removeStalePartials(dir);
  const out: T[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (name.endsWith('.json.tmp')) await rm(join(dir, name), { force: true }); // left by a version before writeFileWhole
    else if (name.endsWith('.json')) out.push(JSON.parse(await readFile(join(dir, name), 'utf8')) as T);
  }
  return out;
}
