/**
 * A tiny ustar writer for hand-made (hostile) layers: raw headers with any name, link name and type,
 * so the tests can build entries GNU tar would refuse to create.
 */

/** One raw tar entry. */
export interface RawEntry {
  readonly name: string;
  /**
   * ustar type flag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo;
   * or a meta entry written as given: 'x' PAX header, 'g' PAX global header, 'L' GNU long name.
   */
  readonly type: '0' | '1' | '2' | '3' | '4' | '5' | '6' | 'x' | 'g' | 'L';
  /** PAX records (e.g. `SCHILY.xattr.user.x`) written as an 'x' header before the entry. */
  readonly pax?: Readonly<Record<string, string | Buffer>>;
  readonly data?: string | Buffer;
  readonly linkname?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly devmajor?: number;
  readonly devminor?: number;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function put(buf: Buffer, offset: number, width: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > width) throw new Error(`tar field too long: ${value}`);
  bytes.copy(buf, offset);
}

/** The 512-byte ustar header of `e` (names up to 100 bytes, or split into prefix/name). */
export function tarHeader(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  let name = e.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/');
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  put(h, 0, 100, name);
  put(h, 100, 8, octal(e.mode ?? (e.type === '5' ? 0o755 : 0o644), 8));
  put(h, 108, 8, octal(e.uid ?? 0, 8));
  put(h, 116, 8, octal(e.gid ?? 0, 8));
  put(h, 124, 12, octal(size, 12));
  put(h, 136, 12, octal(1_700_000_000, 12));
  put(h, 148, 8, '        ');
  put(h, 156, 1, e.type);
  put(h, 157, 100, e.linkname ?? '');
  put(h, 257, 6, 'ustar\0');
  put(h, 263, 2, '00');
  put(h, 265, 32, 'root');
  put(h, 297, 32, 'root');
  put(h, 329, 8, octal(e.devmajor ?? 0, 8));
  put(h, 337, 8, octal(e.devminor ?? 0, 8));
  put(h, 345, 155, prefix);
  let sum = 0;
  for (const b of h) sum += b;
  put(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** The data of a PAX header holding `records` (`"<len> <key>=<value>\n"` each). */
export function paxData(records: Readonly<Record<string, string | Buffer>>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(parts);
}

/** A complete tar stream of `entries` (with the two zero blocks at the end). */
export function tarArchive(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  const expanded = entries.flatMap((e): RawEntry[] => (e.pax ? [{ name: 'PaxHeader', type: 'x', data: paxData(e.pax) }, e] : [e]));
  for (const e of expanded) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    parts.push(tarHeader(e, data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** One header of a tar stream, as `tarEntries` reads it (ustar/GNU, no PAX interpretation). */
export interface ReadEntry {
  readonly name: string;
  readonly type: string;
  readonly size: number;
  readonly mode: number;
  readonly mtime: number;
  readonly linkname: string;
}

/** The headers of an uncompressed tar stream, in order (for diagnostics and comparisons). */
export function tarEntries(tar: Buffer): ReadEntry[] {
  const out: ReadEntry[] = [];
  const str = (o: number, w: number): string => tar.toString('utf8', o, o + w).replace(/\0.*$/s, '');
  const num = (o: number, w: number): number => parseInt(str(o, w).trim() || '0', 8);
  let at = 0;
  let longName: string | undefined;
  while (at + 512 <= tar.length) {
    if (tar.subarray(at, at + 512).every((b) => b === 0)) break;
    const size = num(at + 124, 12);
    const type = str(at + 156, 1) || '0';
    const prefix = str(at + 345, 155);
    let name = prefix ? `${prefix}/${str(at, 100)}` : str(at, 100);
    const body = at + 512;
    at = body + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = tar.toString('utf8', body, body + size).replace(/\0.*$/s, '');
      continue;
    }
    if (type === 'x' || type === 'g') continue;
    if (longName !== undefined) {
      name = longName;
      longName = undefined;
    }
    out.push({ name, type, size, mode: num(body - 512 + 100, 8), mtime: num(body - 512 + 136, 12), linkname: str(body - 512 + 157, 100) });
  }
  return out;
}
