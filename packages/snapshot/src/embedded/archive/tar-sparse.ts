/**
 * Sparse tar entries, as GNU tar writes them: the old GNU format (type `S`, the map in the header
 * and in extension blocks after it) and the PAX formats 0.0 (repeated `GNU.sparse.offset` /
 * `GNU.sparse.numbytes` records), 0.1 (`GNU.sparse.map`) and 1.0 (the map at the start of the data).
 * A map is a flat list of `offset, length` pairs: where each stored data segment goes in the file.
 * Shared by the tar reader (apply) and the layer store's tar-split recorder.
 */
import { BLOCK, corrupt, parseNumber } from './tar-format.js';

/** Where a sparse entry's stored data goes: flat `offset, length` pairs, and the file's real size. */
export interface SparseMap {
  /** Offset, length, offset, length…: ascending, not overlapping, each ending within `realSize`. */
  readonly segments: readonly number[];
  /** The file's real (logical) size; the bytes between segments are holes. */
  readonly realSize: number;
}

/** A numeric field of an old-GNU sparse map (octal, or base-256). */
const numberAt = (block: Buffer, off: number, len: number, entry: string): number => parseNumber(block.subarray(off, off + len), 'sparse map', entry);

/** Appends the `count` entries (24 bytes each) at `off` of an old-GNU block to `out`; true when the block says more follow. */
function gnuEntries(block: Buffer, off: number, count: number, extendedAt: number, out: number[], entry: string): boolean {
  for (let i = 0; i < count; i++) {
    const at = off + i * 24;
    if (block[at] === 0) break; // an empty offset ends the list, as GNU tar reads it
    out.push(numberAt(block, at, 12, entry), numberAt(block, at + 12, 12, entry));
  }
  return block[extendedAt] !== 0;
}

/**
 * The map in an old-GNU (`S`) header block: its segments (appended to `out`), its real size, and
 * whether extension blocks follow (read them with `gnuSparseExtension`).
 */
export function gnuSparseHeader(block: Buffer, out: number[], entry: string): { realSize: number; extended: boolean } {
  const extended = gnuEntries(block, 386, 4, 482, out, entry);
  return { realSize: numberAt(block, 483, 12, entry), extended };
}

/** Appends the segments of one old-GNU sparse extension block to `out`; true when another follows. */
export function gnuSparseExtension(block: Buffer, out: number[], entry: string): boolean {
  return gnuEntries(block, 0, 21, 504, out, entry);
}

/** The sparse format a PAX header announces: none, a map in the header (0.0, 0.1) or at the start of the data (1.0). */
export type PaxSparse =
  | { readonly kind: 'none' }
  | { readonly kind: 'header'; readonly map: SparseMap }
  | { readonly kind: 'data'; readonly realSize: number };

/** Reads a decimal number of a PAX sparse record. */
function decimal(text: string, what: string, entry: string): number {
  const v = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(v)) throw corrupt(`invalid ${what} ${JSON.stringify(text.slice(0, 40))} in a sparse map`, entry);
  return v;
}

/** What the `GNU.sparse.*` records of a PAX header say (after `parsePax`). */
export function paxSparse(pax: ReadonlyMap<string, Buffer>, entry: string): PaxSparse {
  const get = (k: string): string | undefined => pax.get(`GNU.sparse.${k}`)?.toString('latin1');
  const major = get('major');
  const minor = get('minor');
  const size = (key: string): number => {
    const v = get(key);
    if (v === undefined) throw corrupt(`sparse entry without GNU.sparse.${key}`, entry);
    return decimal(v, 'real size', entry);
  };
  if (major !== undefined || minor !== undefined) {
    if (major !== '1' || minor !== '0') throw corrupt(`unsupported sparse format ${major ?? '?'}.${minor ?? '?'}`, entry);
    return { kind: 'data', realSize: size('realsize') };
  }
  const map = get('map');
  if (map === undefined) {
    if ([...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) throw corrupt('sparse entry without a map', entry);
    return { kind: 'none' };
  }
  const segments = map === '' ? [] : map.split(',').map((t) => decimal(t, 'map value', entry));
  if (segments.length % 2 !== 0) throw corrupt('sparse map with an odd count of numbers', entry);
  return { kind: 'header', map: { segments, realSize: size('size') } };
}

/**
 * Reads a PAX 1.0 sparse map from the first blocks of an entry's data: decimal numbers, one per
 * line — the segment count, then offset and length of each — padded to a block. Feed blocks to
 * `push` until it returns true; the map bytes count against `limit`.
 */
export class SparseMapReader {
  private readonly parts: Buffer[] = [];
  private lines = 0;
  private needed = -1;
  /** Bytes of data the map took (whole blocks). */
  bytes = 0;

  constructor(
    private readonly entry: string,
    private readonly limit: number,
  ) {}

  /** Takes the next block of the data; true once the map is complete. */
  push(block: Buffer): boolean {
    this.bytes += BLOCK;
    if (this.bytes > this.limit) throw corrupt(`sparse map over the ${this.limit}-byte limit`, this.entry);
    this.parts.push(Buffer.from(block));
    for (let i = block.indexOf(0x0a); i >= 0; i = block.indexOf(0x0a, i + 1)) this.lines++;
    if (this.needed < 0 && this.lines > 0) {
      const text = Buffer.concat(this.parts).toString('latin1');
      this.needed = 1 + 2 * decimal(text.slice(0, text.indexOf('\n')), 'segment count', this.entry);
    }
    return this.needed >= 0 && this.lines >= this.needed;
  }

  /** The segments (after `push` returned true). */
  segments(): number[] {
    const lines = Buffer.concat(this.parts).toString('latin1').split('\n', this.needed);
    return lines.slice(1).map((t) => decimal(t, 'map value', this.entry));
  }
}

/**
 * Checks a map against the entry holding it: segments ascending and not overlapping, each ending
 * within the real size, their lengths adding up to the `dataSize` bytes stored. ErrCorruptLayer if not.
 */
export function checkSparse(map: SparseMap, dataSize: number, entry: string): void {
  const { segments, realSize } = map;
  let end = 0;
  let sum = 0;
  for (let i = 0; i < segments.length; i += 2) {
    const off = segments[i]!;
    const len = segments[i + 1]!;
    if (off < end) throw corrupt(`sparse map segment at ${off} overlaps the one before or is out of order`, entry);
    end = off + len;
    if (end > realSize) throw corrupt(`sparse map segment at ${off} (${len} bytes) ends beyond the file's size ${realSize}`, entry);
    sum += len;
  }
  if (sum !== dataSize) throw corrupt(`sparse map holds ${sum} bytes of data, the entry ${dataSize}`, entry);
}
