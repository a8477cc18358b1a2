/**
 * The eStargz TOC (`stargz.index.json`): its JSON schema, checked entry by entry, and the index a
 * reader needs — files by normalised path, directory children, each file's chunks with the
 * compressed range that holds them.
 */
import { posix } from 'node:path';
import { ErrEstargzToc, ErrEstargzUnsafeEntry } from '@buildcache/errdefs';

/** Name of the TOC's tar entry, the last one of an eStargz layer. */
export const TOC_NAME = 'stargz.index.json';
/** Landmark whose offset ends the prefetch range. */
export const PREFETCH_LANDMARK = '.prefetch.landmark';
/** Landmark of a layer that asks for no prefetch. */
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark';

/** The TOC entry types. */
export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';
const TYPES: ReadonlySet<string> = new Set(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);

/** One TOC entry as serialized (keys in the writer's order). */
export interface TocEntry {
  name: string;
  type: TocEntryType;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
}

/** The TOC document. */
export interface Toc {
  version: 1;
  entries: TocEntry[];
}

/** One chunk of a regular file: where its gzip member starts and where the next one does. */
export interface Chunk {
  /** Blob offset of the gzip member holding this chunk. */
  readonly offset: number;
  /** Uncompressed offset of the chunk inside that member (0 unless the writer packed several). */
  readonly innerOffset: number;
  /** Blob offset where the compressed data holding this chunk ends (the next member, or the TOC). */
  readonly nextOffset: number;
  /** Offset of the chunk within the file. */
  readonly chunkOffset: number;
  /** Uncompressed length of the chunk. */
  readonly chunkSize: number;
  /** sha256 of the chunk's bytes, when the TOC gives one (else the file's digest covers it). */
  readonly digest: string | undefined;
}

/** A file, directory or other node of the layer, by normalised path. */
export interface TocNode {
  /** Normalised path, no leading `/` or `./` (`''` for the root). */
  readonly path: string;
  readonly entry: TocEntry;
  /** Child names (directories only). */
  readonly children: Map<string, TocNode> | undefined;
  /** Chunks by chunkOffset (non-empty regular files only). */
  readonly chunks: Chunk[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function bad(message: string, details: Record<string, unknown>): ErrEstargzToc {
  return new ErrEstargzToc(message, { details });
}

/** The path of a TOC name, normalised; ErrEstargzUnsafeEntry for `..` or an absolute name. */
export function normalizeName(name: string, blob: string): string {
  if (name.startsWith('/') || name.split('/').includes('..')) {
    throw new ErrEstargzUnsafeEntry(`TOC of ${blob} names ${JSON.stringify(name)}, outside the layer (absolute or with ..); the layer is refused`, {
      details: { digest: blob, entry: name },
    });
  }
  let clean = name.startsWith('./') ? name.slice(2) : name;
  if (clean.endsWith('/')) clean = clean.slice(0, -1);
  if (clean.includes('//') || clean.includes('/./') || clean.startsWith('./') || clean.endsWith('/.') || clean === '.') {
    clean = posix.normalize(`/${name}`).slice(1);
    if (clean.endsWith('/')) clean = clean.slice(0, -1);
  }
  return clean;
}

function checkInt(e: Record<string, unknown>, key: string, blob: string, index: number): void {
  const v = e[key];
  if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0)) {
    throw bad(`TOC of ${blob}: entry ${index} has ${key} ${JSON.stringify(v)}, not a non-negative integer`, { digest: blob, index });
  }
}

function checkString(e: Record<string, unknown>, key: string, blob: string, index: number): void {
  const v = e[key];
  if (v !== undefined && typeof v !== 'string') throw bad(`TOC of ${blob}: entry ${index} has a non-string ${key}`, { digest: blob, index });
}

/** Checks the parsed JSON against the TOC schema (types, ranges, digests); returns it typed. */
export function checkToc(doc: unknown, blob: string, tocOffset: number): Toc {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad(`TOC of ${blob} is not a JSON object`, { digest: blob });
  const { version, entries } = doc as { version?: unknown; entries?: unknown };
  if (version !== 1) throw bad(`TOC of ${blob} has version ${JSON.stringify(version)}; only version 1 is known`, { digest: blob });
  if (!Array.isArray(entries)) throw bad(`TOC of ${blob} has no entries array`, { digest: blob });
  entries.forEach((raw: unknown, i) => {
    if (typeof raw !== 'object' || raw === null) throw bad(`TOC of ${blob}: entry ${i} is not an object`, { digest: blob, index: i });
    const e = raw as Record<string, unknown>;
    if (typeof e.name !== 'string' || e.name === '') throw bad(`TOC of ${blob}: entry ${i} has no name`, { digest: blob, index: i });
    if (typeof e.type !== 'string' || !TYPES.has(e.type)) {
      throw bad(`TOC of ${blob}: entry ${JSON.stringify(e.name)} has unknown type ${JSON.stringify(e.type)}`, { digest: blob, entry: e.name });
    }
    for (const k of ['size', 'mode', 'uid', 'gid', 'offset', 'innerOffset', 'devMajor', 'devMinor', 'chunkOffset', 'chunkSize']) checkInt(e, k, blob, i);
    for (const k of ['modtime', 'linkName', 'userName', 'groupName', 'digest', 'chunkDigest']) checkString(e, k, blob, i);
    for (const k of ['digest', 'chunkDigest'] as const) {
      const d = e[k];
      if (typeof d === 'string' && !DIGEST.test(d)) throw bad(`TOC of ${blob}: entry ${JSON.stringify(e.name)} has ${k} ${JSON.stringify(d)}, not sha256:<hex>`, { digest: blob, entry: e.name });
    }
    if (typeof e.offset === 'number' && e.offset >= tocOffset) {
      throw bad(`TOC of ${blob}: entry ${JSON.stringify(e.name)} has offset ${e.offset}, at or past the TOC (${tocOffset})`, { digest: blob, entry: e.name });
    }
    if (e.xattrs !== undefined && (typeof e.xattrs !== 'object' || e.xattrs === null || Object.values(e.xattrs).some((v) => typeof v !== 'string'))) {
      throw bad(`TOC of ${blob}: entry ${JSON.stringify(e.name)} has malformed xattrs`, { digest: blob, entry: e.name });
    }
  });
  return doc as Toc;
}
