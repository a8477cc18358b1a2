/** Files of a layer that is not eStargz, read from its complete local blob by scanning the tar. */
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import { ErrNotFound } from '@buildcache/errdefs';
import { TarReader, decompress, type TarHeader } from '@buildcache/snapshot';
import type { EstargzStat } from '@buildcache/estargz';

const TYPE_NAMES: Record<TarHeader['type'], string> = {
  file: 'reg', link: 'hardlink', symlink: 'symlink', char: 'char', block: 'block', dir: 'dir', fifo: 'fifo',
};

function clean(path: string): string {
  return posix.normalize(`/${path}`).slice(1).replace(/\/$/, '');
}

/** The index of a plain tar layer: headers by normalised path (later entries win) with their position, and directory children. */
export interface TarIndex {
  readonly headers: Map<string, TarHeader & { ordinal: number }>;
  readonly children: Map<string, Set<string>>;
}

/** Scans the (possibly compressed) tar at `file` once, keeping headers only. */
export async function indexTar(file: string): Promise<TarIndex> {
  const headers: TarIndex['headers'] = new Map();
  let ordinal = 0;
  const children = new Map<string, Set<string>>([['', new Set()]]);
  const reader = new TarReader(decompress(createReadStream(file), 'auto'));
  for (let h = await reader.next(); h; h = await reader.next()) {
    const path = clean(h.name);
    if (path === '') {
      ordinal++;
      continue;
    }
    headers.set(path, { ...h, ordinal: ordinal++ });
    const parts = path.split('/');
    for (let i = 0; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      let set = children.get(dir);
      if (!set) children.set(dir, (set = new Set()));
      set.add(parts[i]!);
    }
  }
  await reader.finish();
  return { headers, children };
}

/** `path`'s metadata from the index; ErrNotFound without it. */
export function statTar(index: TarIndex, path: string, blob: string): EstargzStat {
  const p = clean(path);
  const h = index.headers.get(p);
  if (!h) {
    if (index.children.has(p)) return { path: p, type: 'dir', size: 0, mode: 0o755, uid: 0, gid: 0 };
    throw new ErrNotFound(`${path} is not in layer ${blob}`, { details: { digest: blob, path } });
  }
  return {
    path: p,
    type: TYPE_NAMES[h.type],
    size: h.size,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    ...(h.mtime > 0 ? { modtime: new Date(Math.floor(h.mtime) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') } : {}),
    ...(h.type === 'symlink' || h.type === 'link' ? { linkName: h.linkname } : {}),
  };
}

/** The body of regular file `path` (following a hard link), streamed from the tar at `file`. */
export async function* readTarFile(file: string, index: TarIndex, path: string, blob: string): AsyncGenerator<Buffer> {
  let target = clean(path);
  const h = index.headers.get(target);
  if (h?.type === 'link') target = clean(h.linkname);
  const th = index.headers.get(target);
  if (!th || th.type !== 'file') throw new ErrNotFound(`${path} is not a regular file in layer ${blob}`, { details: { digest: blob, path } });
  const reader = new TarReader(decompress(createReadStream(file), 'auto'));
  let at = 0;
  for (let e = await reader.next(); e; e = await reader.next(), at++) {
    if (at === th.ordinal) {
      yield* reader.body();
      await reader.cancel();
      return;
    }
  }
  throw new ErrNotFound(`${path} vanished from layer ${blob} while reading`, { details: { digest: blob, path } });
}
