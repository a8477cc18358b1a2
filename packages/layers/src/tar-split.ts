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
  #hdr: Buffer = Buffer.alloc(0);
  #pax = new Map<string, Buffer>();
  #longName: string | undefined;
  #raw: Buffer[] = [];
  #rawBytes = 0;
  #frames: Buffer[] = [];
  #frameBytes = 0;

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
    this.#flushRaw(64 << 10);
    this.#flushFrames(64 << 10);
    if (this.#out.writableNeedDrain) await once(this.#out, 'drain');
  }

  /** Flushes and closes the metadata file. */
  async finish(): Promise<void> {
    this.#flushRaw(0);
    this.#flushFrames(0);
    this.#out.end();
    await this.#done;
  }

  /** Closes the file without flushing (after a failure; the caller removes it). */
  async abort(): Promise<void> {
    this.#out.end();
    await this.#done.catch(() => undefined);
  }

  #segment(b: Buffer): void {
    this.#raw.push(Buffer.from(b));
    this.#rawBytes += b.length;
  }

  #flushRaw(atLeast: number): void {
    if (this.#rawBytes === 0 || this.#rawBytes < atLeast) return;
    const data = Buffer.concat(this.#raw);
    this.#raw = [];
    this.#rawBytes = 0;
    this.#frame('S', data);
  }

  #frame(kind: 'S' | 'F', data: Buffer): void {
    const head = Buffer.alloc(5);
    head.write(kind, 0, 'latin1');
    head.writeUInt32BE(data.length, 1);
    this.#frames.push(head, data);
    this.#frameBytes += head.length + data.length;
  }

  /** Hands the frames gathered so far to gzip in one write (each gzip write is a thread-pool job). */
  #flushFrames(atLeast: number): void {
    if (this.#frameBytes === 0 || this.#frameBytes < atLeast) return;
    this.#out.write(Buffer.concat(this.#frames, this.#frameBytes));
    this.#frames = [];
    this.#frameBytes = 0;
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
        const n = Math.min(avail, BLOCK - this.#hdr.length);
        this.#hdr = Buffer.concat([this.#hdr, chunk.subarray(off, off + n)]);
        if (this.#hdr.length === BLOCK) {
          const block = this.#hdr;
          this.#hdr = Buffer.alloc(0);
          this.#segment(block);
          // a map the applier would refuse: the rest of the stream is kept raw (the apply fails anyway)
          try {
            if (st.kind === 'header') this.#header(block);
            else this.#sparseBlock(st.sparse, block);
          } catch {
            this.#state = { kind: 'trailer' };
          }
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
    this.#flushRaw(0);
    const frame: FileFrame = { p: entryPath(f.name), n, ...(f.segments ? { s: f.segments } : {}) };
    this.#frame('F', Buffer.from(JSON.stringify(frame)));
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

