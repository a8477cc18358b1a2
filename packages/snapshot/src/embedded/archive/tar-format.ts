/**
 * The tar header format (ustar with PAX and GNU extensions): field layout, numeric fields (octal
 * and GNU base-256), checksums and PAX records. Shared by the reader and the writer.
 */
import { ErrCorruptLayer } from '@buildcache/errdefs';
import type { SparseMap } from './tar-sparse.js';

/** Size of a tar block. */
export const BLOCK = 512;
/** Most bytes of extended headers (PAX, GNU long name/link) before one entry; more is refused as corrupt. */
export const MAX_META_SIZE = 1 << 20;

/** The kind of a tar entry, after PAX/GNU meta entries have been folded into it. */
export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

/** One tar entry's header, with PAX and GNU long names already applied. */
export interface TarHeader {
  /** Path as stored (PAX `path` or GNU long name or ustar prefix/name), trailing `/` removed. */
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (`& 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Body size in bytes (0 for everything but regular files). */
  size: number;
  /** Modification time, seconds since the epoch (fractional from PAX). */
  mtime: number;
  /** Target of a symlink or hard link. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` records. */
  xattrs: Map<string, Buffer>;
  /**
   * A sparse file's map (GNU or PAX sparse entry): `size` is then its real size, `body()` gives its
   * content with the holes as zeros, `sparseData()` only the stored segments.
   */
  sparse?: SparseMap;
}

/** An ErrCorruptLayer naming the entry (or position) it is about. */
export function corrupt(message: string, entry: string | undefined, cause?: unknown): ErrCorruptLayer {
  const where = entry === undefined ? '' : ` (entry ${JSON.stringify(entry)})`;
  return new ErrCorruptLayer(`${message}${where}`, { ...(cause === undefined ? {} : { cause }), details: entry === undefined ? {} : { entry } });
}

const FIELDS = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

type Field = keyof typeof FIELDS;

/** The raw bytes of a field up to its first NUL. */
export function fieldBytes(block: Buffer, field: Field): Buffer {
  const [off, len] = FIELDS[field];
  const raw = block.subarray(off, off + len);
  const nul = raw.indexOf(0);
  return nul < 0 ? raw : raw.subarray(0, nul);
}

/** A string field, decoded as UTF-8. */
export function fieldString(block: Buffer, field: Field): string {
  return fieldBytes(block, field).toString('utf8');
}

/** Parses a numeric field: octal (space/NUL padded) or GNU base-256 (high bit of the first byte set). */
export function parseNumeric(block: Buffer, field: Field, entry: string | undefined): number {
  const [off, len] = FIELDS[field];
  return parseNumber(block.subarray(off, off + len), field, entry);
}

/** Parses the bytes of a numeric tar field (a header's, or a sparse map's); errors name it as `the <field> field`. */
export function parseNumber(raw: Buffer, field: string, entry: string | undefined): number {
  if (raw[0]! & 0x80) {
    if (raw[0] === 0xff) throw corrupt(`negative base-256 value in the ${field} field`, entry);
    let v = BigInt(raw[0]! & 0x7f);
    for (let i = 1; i < raw.length; i++) v = (v << 8n) | BigInt(raw[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`value out of range in the ${field} field`, entry);
    return Number(v);
  }
  const text = raw.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw corrupt(`invalid octal value ${JSON.stringify(text)} in the ${field} field`, entry);
  const v = parseInt(text, 8);
  if (!Number.isSafeInteger(v)) throw corrupt(`value out of range in the ${field} field`, entry);
  return v;
}

/** Checks a header block's checksum (unsigned sum, or the historic signed sum). */
export function checksumOk(block: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const text = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(text)) return false;
  const stored = parseInt(text, 8);
  return stored === unsigned || stored === signed;
}

/** Writes the checksum of a header block into it. */
export function writeChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

/** Writes a numeric field: octal when it fits, else GNU base-256. */
export function writeNumeric(block: Buffer, field: Field, value: number): void {
  const [off, len] = FIELDS[field];
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`tar ${field} ${value} is not a non-negative safe integer`);
  if (value < 8 ** (len - 1)) {
    block.write(value.toString(8).padStart(len - 1, '0') + '\0', off, 'latin1');
    return;
  }
  let v = BigInt(value);
  for (let i = len - 1; i >= 1; i--) {
    block[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[off] = 0x80;
}

/** Writes raw bytes into a field (which must be long enough: callers check first). */
export function writeBytes(block: Buffer, field: Field, bytes: Buffer): void {
  const [off, len] = FIELDS[field];
  if (bytes.length > len) throw new RangeError(`tar ${field} too long`);
  bytes.copy(block, off);
}

/** Length of a tar field. */
export function fieldLength(field: Field): number {
  return FIELDS[field][1];
}

/**
 * Parses the records of a PAX extended header (`"<len> <key>=<value>\n"`...); the sparse 0.0
 * format's repeated `GNU.sparse.offset`/`numbytes` records become one `GNU.sparse.map`.
 */
export function parsePax(data: Buffer, entry: string | undefined): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const sparse: string[] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    const space = data.indexOf(0x20, pos);
    if (space < 0 || space - pos > 20) throw corrupt('malformed PAX record length', entry);
    const lenText = data.toString('latin1', pos, space);
    if (!/^[0-9]+$/.test(lenText)) throw corrupt('malformed PAX record length', entry);
    const len = parseInt(lenText, 10);
    const end = pos + len;
    if (len <= space - pos + 1 || end > data.length || data[end - 1] !== 0x0a) throw corrupt('malformed PAX record', entry);
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw corrupt('malformed PAX record (no key)', entry);
    const key = record.toString('utf8', 0, eq);
    const value = Buffer.from(record.subarray(eq + 1));
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      // sparse format 0.0 repeats these two per segment: folded, in order, into one GNU.sparse.map
      if ((key === 'GNU.sparse.offset') !== (sparse.length % 2 === 0)) throw corrupt('GNU.sparse.offset and GNU.sparse.numbytes records out of order', entry);
      sparse.push(value.toString('latin1'));
    } else out.set(key, value);
    pos = end;
  }
  if (sparse.length) out.set('GNU.sparse.map', Buffer.from(sparse.join(','), 'latin1'));
  return out;
}

/** Encodes PAX records in the given order. */
export function encodePax(records: ReadonlyArray<readonly [string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.from(String(len), 'latin1'), body);
  }
  return Buffer.concat(parts);
}

/** Bytes of padding after a body of `size` bytes. */
export function padding(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}
