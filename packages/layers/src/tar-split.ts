/**
 * Tar-split metadata: what a tar stream holds besides its regular files' contents (every header
 * block as written, extended headers, padding, the end-of-archive and anything after it), so that
 * the exact stream can be rebuilt later from this metadata and the applied files.
 *
 * Stored as gzip of frames: `S` + u32 length + raw bytes, or `F` + u32 length + JSON `{p, n}` (a
 * regular file's path and body size, whose body comes from the layer's files).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { once } from 'node:events';
import { join, posix, sep } from 'node:path';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import { ErrCorruptLayer } from '@buildcache/errdefs';

const BLOCK = 512;
const padOf = (n: number): number => (BLOCK - (n % BLOCK)) % BLOCK;
/** Extended headers larger than this are kept raw but not parsed (the applier refuses them anyway). */
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

function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(data.subarray(off, sp).toString('latin1'), 10);
    if (!(len > 0) || off + len > data.length) break;
    const rec = data.subarray(sp + 1, off + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    off += len;
  }
  return out;
}

/** The path a regular file entry has in the layer's tree. */
export function entryPath(name: string): string {
  const p = posix.normalize(`/${name}`).slice(1).replace(/\/$/, '');
  return p;
}

type State =
  | { kind: 'header' }
  | { kind: 'raw'; left: number; meta?: { flag: string; size: number; parts: Buffer[]; got: number } }
  | { kind: 'file'; left: number; pad: number }
  | { kind: 'trailer' };

/** Watches the uncompressed bytes of a tar stream and writes its tar-split metadata to a file. */
export class TarSplitRecorder {
  readonly #out: Gzip;
  readonly #done: Promise<unknown>;
  #state: State = { kind: 'header' };
  #hdr: Buffer = Buffer.alloc(0);
  #pax = new Map<string, string>();
  #longName: string | undefined;
  #raw: Buffer[] = [];
  #rawBytes = 0;
  #frames: Buffer[] = [];
  #frameBytes = 0;

  constructor(file: string) {
    this.#out = createGzip({ level: 6 });
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
          if (st.meta) this.#endMeta(st.meta.flag, Buffer.concat(st.meta.parts));
          this.#state = { kind: 'header' };
        }
        return n;
      }
      case 'file': {
        const n = Math.min(avail, st.left);
        st.left -= n;
        if (st.left === 0) this.#state = st.pad > 0 ? { kind: 'raw', left: st.pad } : { kind: 'header' };
        return n;
      }
      case 'header': {
        const n = Math.min(avail, BLOCK - this.#hdr.length);
        this.#hdr = Buffer.concat([this.#hdr, chunk.subarray(off, off + n)]);
        if (this.#hdr.length === BLOCK) {
          const block = this.#hdr;
          this.#hdr = Buffer.alloc(0);
          this.#header(block);
        }
        return n;
      }
    }
  }

  #header(block: Buffer): void {
    this.#segment(block);
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
    if (paxSize !== undefined) size = Number(paxSize);
    const sparse = flag === 'S' || [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'));
    let name = pax.get('path') ?? this.#longName;
    if (name === undefined) {
      name = cstr(block.subarray(0, 100));
      const ustar = block.subarray(257, 263).toString('latin1');
      const prefix = cstr(block.subarray(345, 500));
      if (ustar === 'ustar\0' && prefix !== '') name = `${prefix}/${name}`;
    }
    this.#pax = new Map();
    this.#longName = undefined;
    const regular = flag === '0' || flag === '\0' || flag === '7';
    if (regular && !sparse && size > 0) {
      this.#flushRaw(0);
      this.#frame('F', Buffer.from(JSON.stringify({ p: entryPath(name), n: size })));
      this.#state = { kind: 'file', left: size, pad: padOf(size) };
    } else {
      this.#state = size + padOf(size) > 0 ? { kind: 'raw', left: size + padOf(size) } : { kind: 'header' };
    }
  }

  #endMeta(flag: string, data: Buffer): void {
    if (flag === 'x') for (const [k, v] of parsePax(data)) this.#pax.set(k, v);
    else if (flag === 'L') this.#longName = cstr(data);
  }
}

/** Reads exactly `n` bytes from `stream`-shaped frames. */
class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  readonly #it: AsyncIterator<Buffer>;
  constructor(src: AsyncIterable<Buffer>) {
    this.#it = src[Symbol.asyncIterator]();
  }
  async take(n: number): Promise<Buffer | undefined> {
    while (this.#buf.length < n) {
      const r = await this.#it.next();
      if (r.done) {
        if (this.#buf.length === 0) return undefined;
        throw new ErrCorruptLayer('tar-split metadata is truncated');
      }
      this.#buf = this.#buf.length === 0 ? r.value : Buffer.concat([this.#buf, r.value]);
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

/** A file's body from the layer's tree, exactly `n` bytes; never follows a path out of `root`. */
async function* fileBody(root: string, path: string, n: number, layer: string): AsyncGenerator<Buffer> {
  const full = join(root, path);
  const real = await realpath(full).catch(() => undefined);
  if (real === undefined || !real.startsWith(root + sep)) {
    throw new ErrCorruptLayer(`layer ${layer}: file ${JSON.stringify(path)} of its tar-split metadata is missing from the layer`, { details: { id: layer, entry: path } });
  }
  let got = 0;
  if (n > 0) {
    for await (const c of createReadStream(real, { start: 0, end: n - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      got += c.length;
      yield c;
    }
  }
  if (got !== n) {
    throw new ErrCorruptLayer(`layer ${layer}: file ${JSON.stringify(path)} holds ${got} bytes, its tar entry ${n}`, { details: { id: layer, entry: path } });
  }
}

/**
 * Rebuilds the original tar stream of a layer from its tar-split file and its tree at `root`,
 * checking that the bytes hash to `diffID` (ErrDigestMismatch-like ErrCorruptLayer at the end if not).
 */
export async function* reassemble(metaFile: string, root: string, diffID: string, layer: string): AsyncGenerator<Buffer> {
  const realRoot = await realpath(root);
  const hash = createHash('sha256');
  const frames = new FrameReader(createReadStream(metaFile).pipe(createGunzip()));
  for (;;) {
    const head = await frames.take(5);
    if (!head) break;
    const len = head.readUInt32BE(1);
    const data = len === 0 ? Buffer.alloc(0) : await frames.take(len);
    if (!data) throw new ErrCorruptLayer(`layer ${layer}: tar-split metadata is truncated`, { details: { id: layer } });
    if (head[0] === 0x53) {
      hash.update(data);
      yield Buffer.from(data);
    } else {
      const { p, n } = JSON.parse(data.toString('utf8')) as { p: string; n: number };
      for await (const c of fileBody(realRoot, p, n, layer)) {
        hash.update(c);
        yield c;
      }
    }
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== diffID) {
    throw new ErrCorruptLayer(`layer ${layer}: re-exported tar hashes to ${got}, not its diffID ${diffID}; its files changed since registration`, { details: { id: layer, digest: got } });
  }
}
