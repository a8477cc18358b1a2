/** Serialising a TOC the way the reference writer does: keys in struct order, tab-indented, Go's HTML escapes. */
import type { TarHeader } from '@buildcache/snapshot';
import type { Toc, TocEntry, TocEntryType } from './toc.js';

const KEY_ORDER: ReadonlyArray<keyof TocEntry> = [
  'name', 'type', 'size', 'modtime', 'linkName', 'mode', 'uid', 'gid', 'userName', 'groupName', 'offset',
  'innerOffset', 'devMajor', 'devMinor', 'xattrs', 'digest', 'chunkOffset', 'chunkSize', 'chunkDigest',
];

const TYPE_OF: Record<TarHeader['type'], TocEntryType> = {
  file: 'reg',
  link: 'hardlink',
  symlink: 'symlink',
  char: 'char',
  block: 'block',
  dir: 'dir',
  fifo: 'fifo',
};

/** The TOC entry (without offsets and digests) of a tar entry, its name normalised as `clean`. */
export function tocEntryOf(h: TarHeader, clean: string): TocEntry {
  const name = clean === '' ? './' : h.type === 'dir' ? `${clean}/` : clean;
  const e: TocEntry = { name, type: TYPE_OF[h.type] };
  if (h.type === 'file' && h.size > 0) e.size = h.size;
  const seconds = Math.floor(h.mtime);
  if (seconds > 0) e.modtime = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (h.type === 'symlink' || h.type === 'link') e.linkName = h.linkname;
  e.mode = h.mode;
  if (h.uid) e.uid = h.uid;
  if (h.gid) e.gid = h.gid;
  if (h.type === 'char' || h.type === 'block') {
    if (h.devmajor) e.devMajor = h.devmajor;
    if (h.devminor) e.devMinor = h.devminor;
  }
  if (h.xattrs.size) e.xattrs = Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('base64')]));
  return e;
}

/** The TOC JSON bytes for `entries`. */
export function serializeToc(entries: readonly TocEntry[]): Buffer {
  const ordered = entries.map((e) => {
    const out: Record<string, unknown> = {};
    for (const k of KEY_ORDER) if (e[k] !== undefined) out[k] = e[k];
    return out;
  });
  const toc: { version: Toc['version']; entries: unknown[] } = { version: 1, entries: ordered };
  const text = JSON.stringify(toc, null, '\t')
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  return Buffer.from(text, 'utf8');
}
