/**
 * A tar writer with one deterministic header rule (documented on `TarWriter`). Output is
 * batched into large chunks and handed to an async sink, whose promise gives backpressure.
 */
import { BLOCK, encodePax, fieldLength, padding, writeBytes, writeChecksum, writeNumeric } from './tar-format.js';
import type { EntryType } from './tar-format.js';

/** What the writer needs to emit one entry. */
export interface TarWriteEntry {
  /** Relative path without leading `./` or trailing `/`. */
  readonly name: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Body size (regular files only). */
  readonly size?: number;
  /** Seconds since the epoch; written truncated to whole seconds. */
  readonly mtime: number;
  readonly linkname?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly xattrs?: ReadonlyMap<string, Buffer>;
}

const TYPEFLAG: Record<EntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const CHUNK = 1 << 20;

/** Splits a long path into ustar prefix and name at a `/`, or undefined when it cannot be split. */
function splitUstar(path: Buffer): [Buffer, Buffer] | undefined {
  for (let i = Math.min(path.length - 1, fieldLength('prefix')); i > 0; i--) {
    if (path[i] !== 0x2f) continue;
    const name = path.subarray(i + 1);
    if (name.length === 0 || name.length > fieldLength('name')) return undefined;
    return [path.subarray(0, i), name];
  }
  return undefined;
}

/**
 * Writes a tar stream. Header rule (deterministic, so equal trees give equal bytes):
 * POSIX ustar (`ustar\0` `00`); uname/gname empty; mode `& 0o7777`; mtime truncated to whole
 * seconds, no atime/ctime; numbers that overflow their octal field use GNU base-256; a path
 * longer than the name field is split into prefix/name when possible, else it (and a long link
 * target) goes into a PAX header, as do xattrs (`SCHILY.xattr.<name>`); PAX records are in sorted
 * key order and the PAX header itself is named `././@PaxHeader` with mode 0644, mtime 0.
 * Directories get a trailing `/`. The archive ends with two zero blocks (no record padding).
 */
export class TarWriter {
  private buf: Buffer = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  /** Bytes written so far (including what is still buffered). */
  bytes = 0;

  constructor(private readonly sink: (chunk: Buffer) => Promise<void> | void) {}

  private async push(data: Buffer): Promise<void> {
    this.bytes += data.length;
    if (data.length >= CHUNK) {
      await this.flush();
      await this.sink(data);
      return;
    }
    if (this.used + data.length > CHUNK) await this.flush();
    data.copy(this.buf, this.used);
    this.used += data.length;
  }

  /** Hands buffered bytes to the sink. */
  async flush(): Promise<void> {
    if (this.used === 0) return;
    const out = this.buf.subarray(0, this.used);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.used = 0;
    await this.sink(out);
  }

  private header(name: Buffer, entry: TarWriteEntry, typeflag: string, size: number, linkname: Buffer, mtime: number): Buffer {
    const block = Buffer.alloc(BLOCK);
    if (name.length <= fieldLength('name')) writeBytes(block, 'name', name);
    else {
      const split = splitUstar(name);
      if (split) {
        writeBytes(block, 'prefix', split[0]);
        writeBytes(block, 'name', split[1]);
      } else writeBytes(block, 'name', name.subarray(0, fieldLength('name')));
    }
    writeNumeric(block, 'mode', entry.mode & 0o7777);
    writeNumeric(block, 'uid', entry.uid);
    writeNumeric(block, 'gid', entry.gid);
    writeNumeric(block, 'size', size);
    writeNumeric(block, 'mtime', mtime);
    block.write(typeflag, 156, 'latin1');
    writeBytes(block, 'linkname', linkname.subarray(0, Math.min(linkname.length, fieldLength('linkname'))));
    block.write('ustar\0' + '00', 257, 'latin1');
    writeNumeric(block, 'devmajor', entry.devmajor ?? 0);
    writeNumeric(block, 'devminor', entry.devminor ?? 0);
    writeChecksum(block);
    return block;
  }

  /**
   * Adds one entry. `body` (regular files) must yield exactly `size` bytes.
   */
  async add(entry: TarWriteEntry, body?: Buffer | AsyncIterable<Uint8Array>): Promise<void> {
    const size = entry.type === 'file' ? (entry.size ?? 0) : 0;
    const name = Buffer.from(entry.type === 'dir' ? `${entry.name}/` : entry.name, 'utf8');
    const link = Buffer.from(entry.linkname ?? '', 'utf8');
    const mtime = Math.max(0, Math.floor(entry.mtime));
    const records: Array<[string, Buffer]> = [];
    if (link.length > fieldLength('linkname')) records.push(['linkpath', link]);
    if (name.length > fieldLength('name') && !splitUstar(name)) records.push(['path', name]);
    const xattrs = [...(entry.xattrs ?? new Map<string, Buffer>())].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const [k, v] of xattrs) records.push([`SCHILY.xattr.${k}`, v]);
    if (records.length) {
      const pax = encodePax(records);
      const paxEntry: TarWriteEntry = { name: '', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0 };
      await this.push(this.header(Buffer.from('././@PaxHeader'), paxEntry, 'x', pax.length, Buffer.alloc(0), 0));
      await this.push(pax);
      await this.push(Buffer.alloc(padding(pax.length)));
    }
    await this.push(this.header(name, entry, TYPEFLAG[entry.type], size, link, mtime));
    if (size === 0) return;
    if (!body) throw new Error(`tar entry ${entry.name}: body missing`);
    let written = 0;
    if (Buffer.isBuffer(body)) {
      written = body.length;
      if (written === size) await this.push(body);
    } else {
      for await (const chunk of body) {
        written += chunk.length;
        if (written > size) break;
        await this.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      }
    }
    if (written !== size) throw new Error(`tar entry ${entry.name}: body is ${written > size ? 'longer' : 'shorter'} than ${size} bytes`);
    await this.push(Buffer.alloc(padding(size)));
  }

  /** Writes the end-of-archive marker and flushes. */
  async finish(): Promise<void> {
    await this.push(Buffer.alloc(2 * BLOCK));
    await this.flush();
  }
}
