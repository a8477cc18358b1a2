/**
 * A streaming tar reader: ustar, PAX (path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*), GNU
 * long names and links, base-256 numbers, sparse files (GNU `S`, PAX 0.0/0.1/1.0). Bodies are
 * streamed, never buffered whole unless asked. Malformed, oversized or truncated input gives
 * ErrCorruptLayer naming the entry.
 */
import {
  BLOCK,
  MAX_META_SIZE,
  checksumOk,
  corrupt,
  fieldBytes,
  fieldString,
  padding,
  parseNumeric,
  parsePax,
} from './tar-format.js';
import type { EntryType, TarHeader } from './tar-format.js';
import { SparseMapReader, checkSparse, gnuSparseExtension, gnuSparseHeader, paxSparse } from './tar-sparse.js';
import type { SparseMap } from './tar-sparse.js';

/** Bytes as chunks: an async iterable (streams, generators) or a plain iterable (an array of buffers). */
export type ByteStream = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

function toAsync(it: Iterator<Uint8Array>): AsyncIterator<Uint8Array> {
  return { next: () => Promise.resolve(it.next()) };
}

/** Pulls exact byte counts out of an async iterable of chunks. */
class ByteSource {
  private readonly it: AsyncIterator<Uint8Array>;
  private head: Buffer = Buffer.alloc(0);
  private done = false;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(source: ByteStream) {
    this.it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source[Symbol.iterator]());
  }

  private async fill(): Promise<boolean> {
    while (this.head.length === 0 && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length > 0) this.head = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
    return this.head.length > 0;
  }

  /** Up to `max` bytes (at least one), or undefined at end of input. */
  async some(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    const out = this.head.length <= max ? this.head : this.head.subarray(0, max);
    this.head = this.head.subarray(out.length);
    this.consumed += out.length;
    return out;
  }

  /** Exactly `n` bytes, or fewer when the input ends first. */
  async exact(n: number): Promise<Buffer> {
    const first = await this.some(n);
    if (!first || first.length === n) return first ?? Buffer.alloc(0);
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const more = await this.some(n - got);
      if (!more) break;
      parts.push(more);
      got += more.length;
    }
    return Buffer.concat(parts, got);
  }

  /** Consumes everything that is left; returns the byte count. */
  async drain(): Promise<number> {
    let n = 0;
    for (let c = await this.some(1 << 30); c; c = await this.some(1 << 30)) n += c.length;
    return n;
  }

  /** Stops the underlying iterator (e.g. after an error). */
  async cancel(): Promise<void> {
    this.done = true;
    await this.it.return?.();
  }
}

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  S: 'file', // GNU sparse
  '1': 'link',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Options of the tar reader. */
export interface TarReaderOptions {
  /** Most bytes of extended headers (PAX, GNU long names, their header blocks) before one entry; default 1 MiB. */
  readonly maxMetaSize?: number;
}

/**
 * Reads entries one at a time: `next()` returns the next header (skipping whatever of the
 * previous body was not read), `body()` streams the current body, `finish()` drains trailing bytes.
 */
export class TarReader {
  private readonly src: ByteSource;
  private readonly maxMeta: number;
  private remaining = 0;
  private pad = 0;
  private current: string | undefined;
  private sparse: SparseMap | undefined;
  private ended = false;
  private start = 0;

  constructor(source: ByteStream, options: TarReaderOptions = {}) {
    this.src = new ByteSource(source);
    this.maxMeta = options.maxMetaSize ?? MAX_META_SIZE;
  }

  /** Bytes of tar consumed so far. */
  get position(): number {
    return this.src.consumed;
  }

  /** Offset of the first header block (extended headers included) of the entry `next()` returned last. */
  get entryStart(): number {
    return this.start;
  }

  private async skipRest(): Promise<void> {
    let left = this.remaining + this.pad;
    while (left > 0) {
      const c = await this.src.some(left);
      if (!c) throw corrupt('unexpected end of archive inside an entry body', this.current);
      left -= c.length;
    }
    this.remaining = 0;
    this.pad = 0;
  }

  /** Reads one extended header's data; `chain` counts the bytes of every extended header before this entry. */
  private async readMeta(size: number, what: string, entry: string, chain: { bytes: number }): Promise<Buffer> {
    chain.bytes += BLOCK + size;
    if (chain.bytes > this.maxMeta) {
      throw corrupt(`${what} of ${size} bytes takes the extended headers of one entry over the ${this.maxMeta}-byte limit`, entry);
    }
    const data = await this.src.exact(size + padding(size));
    if (data.length < size + padding(size)) throw corrupt(`unexpected end of archive inside a ${what}`, entry);
    return data.subarray(0, size);
  }

  /** The next entry's header, or undefined at the end of the archive. */
  async next(): Promise<TarHeader | undefined> {
    if (this.ended) return undefined;
    await this.skipRest();
    this.start = this.src.consumed;
    const pax = new Map<string, Buffer>();
    let longName: string | undefined;
    let longLink: string | undefined;
    const chain = { bytes: 0 };
    for (;;) {
      const block = await this.src.exact(BLOCK);
      if (block.length === 0 && this.src.consumed === 0) {
        this.ended = true; // empty input: an empty layer
        return undefined;
      }
      if (block.length < BLOCK) throw corrupt('unexpected end of archive in a header (missing end-of-archive marker)', this.current);
      if (block.every((b) => b === 0)) {
        if (pax.size || longName !== undefined || longLink !== undefined) throw corrupt('end of archive after an extended header', this.current);
        this.ended = true;
        return undefined;
      }
      const rawName = fieldString(block, 'name');
      if (!checksumOk(block)) throw corrupt('header checksum mismatch', this.current === undefined ? rawName : `after ${this.current}`);
      const flag = String.fromCharCode(block[156]!);
      const entry = longName ?? pax.get('path')?.toString('utf8') ?? rawName;
      const size = parseNumeric(block, 'size', entry);
      if (flag === 'x' || flag === 'g') {
        const data = await this.readMeta(size, flag === 'x' ? 'PAX header' : 'PAX global header', entry, chain);
        if (flag === 'x') for (const [k, v] of parsePax(data, entry)) pax.set(k, v);
        continue; // global headers are read and ignored
      }
      if (flag === 'L' || flag === 'K') {
        const data = await this.readMeta(size, flag === 'L' ? 'GNU long name' : 'GNU long link', entry, chain);
        const nul = data.indexOf(0);
        const text = (nul < 0 ? data : data.subarray(0, nul)).toString('utf8');
        if (flag === 'L') longName = text;
        else longLink = text;
        continue;
      }
      if (flag === 'V') {
        await this.readMeta(size, 'volume header', entry, chain);
        continue;
      }
      const type = TYPES[flag];
      if (!type) throw corrupt(`unsupported entry type ${JSON.stringify(flag)}`, entry);
      const header = this.build(block, type, pax, longName, longLink);
      this.current = header.name;
      this.remaining = header.size;
      this.pad = padding(this.remaining);
      // some writers give directories or links a size; that body is skipped, it is not content
      if (type !== 'file') header.size = 0;
      this.sparse = undefined;
      if (flag === 'S') this.sparse = await this.gnuSparse(block, header.name, chain);
      else if (type === 'file') this.sparse = await this.paxSparse(pax, header.name, chain);
      if (this.sparse) {
        checkSparse(this.sparse, this.remaining, header.name);
        header.size = this.sparse.realSize;
        header.sparse = this.sparse;
      }
      return header;
    }
  }

  /** The map of an old-GNU sparse entry: in its header block and the extension blocks after it. */
  private async gnuSparse(block: Buffer, entry: string, chain: { bytes: number }): Promise<SparseMap> {
    const segments: number[] = [];
    const { realSize, extended } = gnuSparseHeader(block, segments, entry);
    for (let more = extended; more; ) more = gnuSparseExtension(await this.readMeta(BLOCK, 'sparse map extension block', entry, chain), segments, entry);
    return { segments, realSize };
  }

  /** The map of a PAX sparse entry (none if it is not one): in its records, or (1.0) read from the start of its data. */
  private async paxSparse(pax: Map<string, Buffer>, entry: string, chain: { bytes: number }): Promise<SparseMap | undefined> {
    const found = paxSparse(pax, entry);
    if (found.kind === 'none') return undefined;
    if (found.kind === 'header') return found.map;
    const map = new SparseMapReader(entry, this.maxMeta - chain.bytes);
    for (;;) {
      if (this.remaining < BLOCK) throw corrupt('sparse map larger than the entry', entry);
      const block = await this.src.exact(BLOCK);
      if (block.length < BLOCK) throw corrupt('unexpected end of archive inside a sparse map', entry);
      this.remaining -= BLOCK;
      if (map.push(block)) return { segments: map.segments(), realSize: found.realSize };
    }
  }

  private build(block: Buffer, type: EntryType, pax: Map<string, Buffer>, longName?: string, longLink?: string): TarHeader {
    const magic = fieldBytes(block, 'magic').toString('latin1');
    const prefix = magic.startsWith('ustar') && block[263] === 0x30 ? fieldString(block, 'prefix') : '';
    let name = pax.get('GNU.sparse.name')?.toString('utf8') ?? pax.get('path')?.toString('utf8') ?? longName ?? (prefix ? `${prefix}/${fieldString(block, 'name')}` : fieldString(block, 'name'));
    const linkname = pax.get('linkpath')?.toString('utf8') ?? longLink ?? fieldString(block, 'linkname');
    if (name.includes('\0') || linkname.includes('\0')) throw corrupt('NUL byte in a name', name);
    while (name.length > 1 && name.endsWith('/')) name = name.slice(0, -1);
    const num = (key: string, field: 'uid' | 'gid' | 'size' | 'mtime'): number => {
      const v = pax.get(key);
      if (v === undefined) return parseNumeric(block, field, name);
      const text = v.toString('latin1');
      const n = field === 'mtime' ? Number(text) : /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!Number.isFinite(n) || (field !== 'mtime' && !Number.isSafeInteger(n))) throw corrupt(`invalid PAX ${key} ${JSON.stringify(text)}`, name);
      return n;
    };
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const isDev = type === 'char' || type === 'block';
    return {
      name,
      type,
      mode: parseNumeric(block, 'mode', name) & 0o7777,
      uid: num('uid', 'uid'),
      gid: num('gid', 'gid'),
      size: num('size', 'size'),
      mtime: num('mtime', 'mtime'),
      linkname,
      devmajor: isDev ? parseNumeric(block, 'devmajor', name) : 0,
      devminor: isDev ? parseNumeric(block, 'devminor', name) : 0,
      xattrs,
    };
  }

  /**
   * Streams the current entry's body (its unread part). A sparse file's content comes whole, holes
   * as zeros: read it from its start.
   */
  async *body(): AsyncGenerator<Buffer> {
    if (!this.sparse) {
      yield* this.stored(this.remaining);
      return;
    }
    const { segments, realSize } = this.sparse;
    let pos = 0;
    for (let i = 0; i <= segments.length; i += 2) {
      const off = i < segments.length ? segments[i]! : realSize;
      for (; pos < off; pos += Math.min(off - pos, 1 << 20)) yield Buffer.alloc(Math.min(off - pos, 1 << 20));
      if (i === segments.length) break;
      yield* this.stored(segments[i + 1]!);
      pos += segments[i + 1]!;
    }
  }

  /** Streams a sparse file's stored data: its segments one after the other, as the map (`header.sparse`) places them. */
  sparseData(): AsyncGenerator<Buffer> {
    return this.stored(this.remaining);
  }

  /** Streams the next `n` bytes of the current entry's stored data. */
  private async *stored(n: number): AsyncGenerator<Buffer> {
    for (let left = n; left > 0; ) {
      const c = await this.src.some(Math.min(left, 1 << 20));
      if (!c) throw corrupt('unexpected end of archive inside an entry body', this.current);
      this.remaining -= c.length;
      left -= c.length;
      yield c;
    }
  }

  /** The current entry's whole (unread) body in one buffer. */
  async readBody(): Promise<Buffer> {
    if (this.sparse) {
      const parts: Buffer[] = [];
      for await (const c of this.body()) parts.push(c);
      return Buffer.concat(parts);
    }
    const n = this.remaining;
    const data = await this.src.exact(n);
    if (data.length < n) throw corrupt('unexpected end of archive inside an entry body', this.current);
    this.remaining = 0;
    return data;
  }

  /** After the end-of-archive marker: consumes the rest of the input (it counts for the diffID). */
  async finish(): Promise<void> {
    if (!this.ended) throw new Error('TarReader.finish() before the end of the archive');
    await this.src.drain();
  }

  /** Stops reading the input early (after an error). */
  async cancel(): Promise<void> {
    await this.src.cancel();
  }
}
