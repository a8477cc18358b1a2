/**
 * The layer store's files: one directory per layer (`<root>/layers/<chainID hex>/`) holding
 * `layer.json` and `tar-split.gz`, and `<root>/tmp/` for registrations and deletions in progress,
 * each named `<cache record ID>.<reg|del>` so that an interrupted one can be finished at open.
 */
import { open, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

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
}

export const hexOf = (digest: string): string => digest.slice(digest.indexOf(':') + 1);
export const layersDir = (root: string): string => join(root, 'layers');
export const tmpDir = (root: string): string => join(root, 'tmp');
export const layerDir = (root: string, chainID: string): string => join(layersDir(root), hexOf(chainID));

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `layer.json` into `dir` atomically and durably. */
export async function writeMeta(dir: string, meta: LayerMeta): Promise<void> {
  const file = join(dir, 'layer.json');
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(meta));
  await fsyncPath(tmp);
  await rename(tmp, file);
  await fsyncPath(dir);
}

/** Renames `from` to `to` durably (both parent directories synced). */
export async function durableRename(from: string, to: string): Promise<void> {
  await fsyncPath(from).catch(() => undefined);
  await rename(from, to);
  await fsyncPath(dirname(to));
  if (dirname(from) !== dirname(to)) await fsyncPath(dirname(from));
}
