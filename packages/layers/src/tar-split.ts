/**
 * Tar-split metadata: what a tar stream holds besides its regular files' contents (every header
 * block as written, extended headers, sparse maps, padding, the end-of-archive and anything after
 * it), so that the exact stream can be rebuilt later from this metadata and the applied files.
 *
 * Stored as gzip of frames: `S` + u32 length + raw bytes, or `F` + u32 length + JSON `{p, n, s?}`
 * (a regular file's path and stored body size, whose body comes from the layer's files; for a
 * sparse file `s` is its map, flat offset/length pairs: the body is those ranges of the file).
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { posix } from 'node:path';
import { createGzip, type Gzip } from 'node:zlib';
import { SparseMapReader, checkSparse, gnuSparseExtension, gnuSparseHeader, parsePax, paxSparse, type SparseMap } from '@buildcache/snapshot';

const BLOCK = 512;
const padOf = (n: number): number => (BLOCK - (n % BLOCK)) % BLOCK;
/** Extended headers and sparse maps larger than this are kept raw but not parsed (the applier refuses them anyway). */
const MAX_META = 1 << 20;
/** Frames are built in buffers of this size... */
const OUT_CHUNK = 256 << 10;
/** ...and handed to gzip once this many bytes are ready (each gzip write is a thread-pool job). */
const FLUSH_AT = 64 << 10;

function parseNumber(b: Buffer): number {
  if (b[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  return s === '' ? 0 : parseInt(s, 8);
}

const cstr = (b: Buffer): string => {
  const z = b.indexOf(0);
  return (z < 0 ? b : b.subarray(0, z)).toString('utf8');
};

/** The path a regular file entry has in the layer's tree. */
export function entryPath(name: string): string {
  const p = posix.normalize(`/${name}`).slice(1).replace(/\/$/, '');
  return p;
}

/** A sparse entry whose map is still being read: from old-GNU extension blocks, or (PAX 1.0) the start of its data. */
interface PendingSparse {
  readonly name: string;
  /** Stored bytes of the entry (the 1.0 map included), after its header blocks. */
  readonly size: number;
  readonly realSize: number;
  readonly segments: number[];
  readonly map?: SparseMapReader;
}

type State =
  | { kind: 'header' }
  | { kind: 'sparse'; sparse: PendingSparse }
  | { kind: 'raw'; left: number; meta?: { flag: string; size: number; parts: Buffer[]; got: number } }
  | { kind: 'file'; left: number; pad: number }
  | { kind: 'trailer' };

/** A regular file frame: path, stored body bytes, and a sparse file's map. */
export interface FileFrame {
  readonly p: string;
  readonly n: number;
  readonly s?: readonly number[];
}

/** Watches the uncompressed bytes of a tar stream and writes its tar-split metadata to a file. */
export class TarSplitRecorder {
  readonly #out: Gzip;
  readonly #done: Promise<unknown>;
  #state: State = { kind: 'header' };
  /** A header block that arrived in pieces, and how much of it is here. */
  readonly #hdr = Buffer.alloc(BLOCK);
  #hdrLen = 0;
  #pax = new Map<string, Buffer>();
  #longName: string | undefined;
  /** Frames being built (the bytes up to #len), handed to gzip together. */
  #buf = Buffer.allocUnsafe(OUT_CHUNK);
  #len = 0;
  /** Offset in #buf of the open raw frame's head (its bytes follow it, up to #len); -1 when none is open. */
  #rawAt = -1;

  constructor(file: string) {
    this.#out = createGzip({ level: 1 });
    const ws = createWriteStream(file, { flags: 'wx' });
    this.#out.pipe(ws);
    this.#done = once(ws, 'close');
    ws.on('error', (err) => this.#out.destroy(err));
  }

  /** Feeds the next bytes of the tar stream; resolves when the metadata writer has room. */
  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) off += this.#step(chunk, off);
    if (this.#len >= FLUSH_AT) this.#handOver();
    if (this.#out.writableNeedDrain) await once(this.#out, 'drain');
  }

  /** Flushes and closes the metadata file. */
  async finish(): Promise<void> {
    this.#handOver();
    this.#out.end();
    await this.#done;
  }

  /** Closes the file without flushing (after a failure; the caller removes it). */
  async abort(): Promise<void> {
    this.#out.end();
    await this.#done.catch(() => undefined);
  }

  /** Appends raw bytes (to the open raw frame, or a new one). */
  #segment(b: Buffer): void {
    for (let off = 0; off < b.length; ) {
      if (this.#rawAt < 0) {
        this.#room(6);
        this.#rawAt = this.#len;
        this.#len += 5;
      }
      const n = Math.min(b.length - off, this.#buf.length - this.#len);
      if (n === 0) {
        this.#handOver();
        continue;
      }
      b.copy(this.#buf, this.#len, off, off + n);
      this.#len += n;
      off += n;
    }
  }

  /** Writes the open raw frame's head (an empty one is dropped). */
  #closeRaw(): void {
    if (this.#rawAt < 0) return;
    const n = this.#len - this.#rawAt - 5;
    if (n === 0) this.#len = this.#rawAt;
    else {
      this.#buf[this.#rawAt] = 0x53; // 'S'
      this.#buf.writeUInt32BE(n, this.#rawAt + 1);
    }
    this.#rawAt = -1;
  }

  /** A file frame: its JSON after the frames so far. */
  #fileFrame(frame: FileFrame): void {
    this.#closeRaw();
    const json = JSON.stringify(frame);
    const n = Buffer.byteLength(json);
    this.#room(5 + n);
    this.#buf[this.#len] = 0x46; // 'F'
    this.#buf.writeUInt32BE(n, this.#len + 1);
    this.#buf.write(json, this.#len + 5, 'utf8');
    this.#len += 5 + n;
  }

  /** Makes room for `n` more bytes after the frames so far. */
  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    this.#handOver();
    if (n > this.#buf.length) this.#buf = Buffer.allocUnsafe(Math.max(OUT_CHUNK, n));
  }

  /** Hands the frames built so far to gzip in one write (each gzip write is a thread-pool job); the rest of the buffer is used for the next ones. */
  #handOver(): void {
    this.#closeRaw();
    if (this.#len > 0) this.#out.write(this.#buf.subarray(0, this.#len));
    this.#buf = this.#buf.length - this.#len >= FLUSH_AT ? this.#buf.subarray(this.#len) : Buffer.allocUnsafe(OUT_CHUNK);
    this.#len = 0;
  }

  /** Consumes bytes of `chunk` from `off`; returns how many. */
  #step(chunk: Buffer, off: number): number {
    const st = this.#state;
    const avail = chunk.length - off;
    switch (st.kind) {
      case 'trailer':
        this.#segment(chunk.subarray(off));
        return avail;
      case 'raw': {
        const n = Math.min(avail, st.left);
        const part = chunk.subarray(off, off + n);
        this.#segment(part);
        if (st.meta && st.meta.got < st.meta.size) {
          const take = part.subarray(0, Math.min(part.length, st.meta.size - st.meta.got));
          st.meta.parts.push(Buffer.from(take));
          st.meta.got += take.length;
        }
        st.left -= n;
        if (st.left === 0) {
          this.#state = { kind: 'header' };
          if (st.meta) this.#endMeta(st.meta.flag, Buffer.concat(st.meta.parts));
        }
        return n;
      }
      case 'file': {
        const n = Math.min(avail, st.left);
        st.left -= n;
        if (st.left === 0) this.#state = st.pad > 0 ? { kind: 'raw', left: st.pad } : { kind: 'header' };
        return n;
      }
      case 'header':
      case 'sparse': {
        // a whole block in the chunk is used where it is; one in pieces is put together in #hdr
        let block: Buffer;
        let n: number;
        if (this.#hdrLen === 0 && avail >= BLOCK) {
          n = BLOCK;
          block = chunk.subarray(off, off + BLOCK);
        } else {
          n = Math.min(avail, BLOCK - this.#hdrLen);
          chunk.copy(this.#hdr, this.#hdrLen, off, off + n);
          this.#hdrLen += n;
          if (this.#hdrLen < BLOCK) return n;
          this.#hdrLen = 0;
          block = this.#hdr;
        }
        this.#segment(block);
        // a map the applier would refuse: the rest of the stream is kept raw (the apply fails anyway)
        try {
          if (st.kind === 'header') this.#header(block);
          else this.#sparseBlock(st.sparse, block);
        } catch {
          this.#state = { kind: 'trailer' };
        }
        return n;
      }
    }
  }

  #header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      this.#state = { kind: 'trailer' };
      return;
    }
    const flag = String.fromCharCode(block[156]!);
    let size = parseNumber(block.subarray(124, 136));
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K' || flag === 'V') {
      const meta = flag === 'V' || size > MAX_META ? undefined : { flag, size, parts: [], got: 0 };
      this.#state = size + padOf(size) > 0 ? { kind: 'raw', left: size + padOf(size), ...(meta ? { meta } : {}) } : { kind: 'header' };
      if (meta && size === 0) this.#endMeta(flag, Buffer.alloc(0));
      return;
    }
    const pax = this.#pax;
    const paxSize = pax.get('size');
    if (paxSize !== undefined) size = Number(paxSize.toString('latin1'));
    let name = (pax.get('GNU.sparse.name') ?? pax.get('path'))?.toString('utf8') ?? this.#longName;
    if (name === undefined) {
      name = cstr(block.subarray(0, 100));
      const ustar = block.subarray(257, 263).toString('latin1');
      const prefix = cstr(block.subarray(345, 500));
      if (ustar === 'ustar\0' && prefix !== '') name = `${prefix}/${name}`;
    }
    this.#pax = new Map();
    this.#longName = undefined;
    const regular = flag === '0' || flag === '\0' || flag === '7';
    if (flag === 'S') {
      const segments: number[] = [];
      const { realSize, extended } = gnuSparseHeader(block, segments, name);
      const sparse = { name, size, realSize, segments };
      if (extended) this.#state = { kind: 'sparse', sparse };
      else this.#file(sparse);
      return;
    }
    const found = regular ? paxSparse(pax, name) : { kind: 'none' as const };
    if (found.kind === 'header') this.#file({ name, size, ...found.map, segments: [...found.map.segments] });
    else if (found.kind === 'data') this.#state = { kind: 'sparse', sparse: { name, size, realSize: found.realSize, segments: [], map: new SparseMapReader(name, Math.min(MAX_META, size)) } };
    else if (regular) this.#file({ name, size });
    else this.#state = size + padOf(size) > 0 ? { kind: 'raw', left: size + padOf(size) } : { kind: 'header' };
  }

  /** One block of a sparse entry's map: an old-GNU extension block, or a block of a 1.0 map at the start of the data. */
  #sparseBlock(sp: PendingSparse, block: Buffer): void {
    if (sp.map) {
      if (!sp.map.push(block)) return;
      this.#file({ ...sp, segments: sp.map.segments() }, sp.map.bytes);
    } else {
      if (sp.segments.length > MAX_META / 12) throw new Error('sparse map over the limit'); // the applier refuses it too
      if (!gnuSparseExtension(block, sp.segments, sp.name)) this.#file(sp);
    }
  }

  /**
   * A regular file's body: a frame naming the file (and the ranges of it a sparse entry stores),
   * then its bytes are skipped. `mapBytes`: bytes of a 1.0 map already kept at the start of the body.
   */
  #file(f: { name: string; size: number } & Partial<SparseMap>, mapBytes = 0): void {
    const n = f.size - mapBytes;
    if (f.segments) checkSparse({ segments: f.segments, realSize: f.realSize! }, n, f.name);
    if (n === 0) {
      this.#state = padOf(f.size) > 0 ? { kind: 'raw', left: padOf(f.size) } : { kind: 'header' };
      return;
    }
    this.#fileFrame({ p: entryPath(f.name), n, ...(f.segments ? { s: f.segments } : {}) });
    this.#state = { kind: 'file', left: n, pad: padOf(f.size) };
  }

  #endMeta(flag: string, data: Buffer): void {
    if (flag === 'L') this.#longName = cstr(data);
    if (flag !== 'x') return;
    try {
      for (const [k, v] of parsePax(data, undefined)) this.#pax.set(k, v);
    } catch {
      this.#state = { kind: 'trailer' }; // malformed: the rest is kept raw (the applier refuses it)
    }
  }
}

