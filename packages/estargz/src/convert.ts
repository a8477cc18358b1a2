/**
 * Converts a tar layer (plain, gzip or zstd) into eStargz: the tar is spooled to a temporary file
 * and indexed, entries are reordered (prioritized files and their parents first, then the prefetch
 * landmark), and written as gzip members that start at every file chunk, the TOC and the footer.
 * Tar headers are copied byte for byte; only the landmark, the TOC entry and the end of archive are
 * new. Memory stays bounded by the chunk size.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { ErrCorruptLayer, ErrInvalidArgument } from '@buildcache/errdefs';
import { TarReader, decompress, type ByteStream, type TarHeader } from '@buildcache/snapshot';
import { encodeFooter } from './footer.js';
import { BLOCK, fileHeader, padding } from './tar-header.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_NAME, type TocEntry } from './toc.js';
import { serializeToc, tocEntryOf } from './toc-writer.js';

const gzipAsync = promisify(gzip);

/** Options of `convertToEstargz`. */
export interface ConvertOptions {
  /** Largest uncompressed chunk of a file (default 4 MiB). */
  readonly chunkSize?: number;
  /** Files to put first, in access order; `.prefetch.landmark` follows them (default none: `.no.prefetch.landmark` first). */
  readonly prioritizedFiles?: readonly string[];
  /** Skip prioritized files the layer lacks instead of failing. */
  readonly allowPrioritizedNotFound?: boolean;
  /** gzip level (default 6). */
  readonly level?: number;
  /** Directory for the spooled tar (default the OS temp dir). */
  readonly tmpDir?: string;
  readonly signal?: AbortSignal;
}

/** What a conversion wrote. */
export interface ConvertResult {
  /** sha256 of the eStargz blob. */
  readonly digest: string;
  readonly size: number;
  /** sha256 of the decompressed blob (the layer's new diffID). */
  readonly diffID: string;
  readonly uncompressedSize: number;
  /** sha256 of the TOC JSON (the `containerd.io/snapshot/stargz/toc.digest` annotation). */
  readonly tocDigest: string;
  readonly tocOffset: number;
}

/** One tar entry of the spooled input. */
interface Spooled {
  readonly header: TarHeader;
  readonly path: string;
  readonly start: number;
  readonly payload: number;
  end: number;
}

const LANDMARK_BYTE = Buffer.from([0x0f]);
const RESERVED = new Set([TOC_NAME, PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK]);

/** Writes the decompressed input to `fh` while indexing its entries. */
async function spool(source: ByteStream, fh: FileHandle, signal?: AbortSignal): Promise<Spooled[]> {
  let written = 0;
  const tee = (async function* () {
    for await (const chunk of decompress(source, 'auto')) {
      signal?.throwIfAborted();
      await fh.write(chunk, 0, chunk.length, written);
      written += chunk.length;
      yield chunk;
    }
  })();
  const reader = new TarReader(tee);
  const entries: Spooled[] = [];
  for (let h = await reader.next(); h; h = await reader.next()) {
    const prev = entries[entries.length - 1];
    if (prev) prev.end = reader.entryStart;
    const path = posix.normalize(`/${h.name}`).slice(1);
    // the payload is copied from the tar as stored: a sparse entry's is not its content
    if (h.sparse) throw new ErrCorruptLayer(`sparse entries are not supported by the eStargz conversion (entry ${JSON.stringify(h.name)})`, { details: { entry: h.name } });
    entries.push({ header: h, path, start: reader.entryStart, payload: reader.position, end: 0 });
  }
  const last = entries[entries.length - 1];
  if (last) last.end = reader.entryStart;
  await reader.finish();
  return entries.filter((e) => !RESERVED.has(e.path));
}

/** The write order: prioritized files (parents first), then everything else in input order. */
function order(entries: Spooled[], options: ConvertOptions): { first: Spooled[]; rest: Spooled[] } {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const taken = new Set<Spooled>();
  const first: Spooled[] = [];
  const take = (path: string): void => {
    const e = byPath.get(path);
    if (!e || taken.has(e)) return;
    taken.add(e);
    first.push(e);
  };
  for (const name of options.prioritizedFiles ?? []) {
    const path = posix.normalize(`/${name}`).slice(1);
    if (!byPath.has(path)) {
      if (options.allowPrioritizedNotFound) continue;
      throw new ErrInvalidArgument(`prioritized file ${JSON.stringify(name)} is not in the layer; remove it or allow missing prioritized files`, { details: { path: name } });
    }
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) take(parts.slice(0, i).join('/'));
    take(path);
  }
  return { first, rest: entries.filter((e) => !taken.has(e)) };
}

/** Accumulates plaintext and emits it as gzip members, counting compressed offsets. */
class MemberWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Compressed bytes written so far. */
  offset = 0;
  readonly blobHash = createHash('sha256');
  readonly diffHash = createHash('sha256');
  uncompressed = 0;

  constructor(
    private readonly sink: (chunk: Buffer) => Promise<void>,
    private readonly level: number,
    private readonly maxPending: number,
  ) {}

  async add(data: Buffer): Promise<void> {
    if (data.length === 0) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.diffHash.update(data);
    this.uncompressed += data.length;
    if (this.pendingBytes >= this.maxPending) await this.cut();
  }

  /** Ends the current member (if it holds anything), so that the next bytes start a new one. */
  async cut(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const plain = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.raw(await gzipAsync(plain, { level: this.level }));
  }

  /** Writes bytes that are already compressed (the footer). */
  async raw(data: Buffer): Promise<void> {
    this.blobHash.update(data);
    this.offset += data.length;
    await this.sink(data);
  }
}

async function readSpool(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) throw new Error(`spooled tar ended at ${offset + got}`);
    got += bytesRead;
  }
  return buf;
}

/** Writes one input entry: its header bytes, then (for a file) each chunk in a member of its own. */
async function writeEntry(w: MemberWriter, fh: FileHandle, e: Spooled, chunkSize: number, toc: TocEntry[]): Promise<void> {
  await w.add(await readSpool(fh, e.start, e.payload - e.start));
  const entry = tocEntryOf(e.header, e.path);
  toc.push(entry);
  const size = e.header.type === 'file' ? e.header.size : 0;
  if (e.header.type === 'file') {
    const fileHash = createHash('sha256');
    for (let done = 0; done < size; ) {
      const n = Math.min(chunkSize, size - done);
      await w.cut();
      const data = await readSpool(fh, e.payload + done, n);
      fileHash.update(data);
      const chunkDigest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      const target: TocEntry = done === 0 ? entry : { name: entry.name, type: 'chunk' };
      target.offset = w.offset;
      if (done > 0) target.chunkOffset = done;
      if (size - done >= chunkSize) target.chunkSize = chunkSize;
      target.chunkDigest = chunkDigest;
      if (done > 0) toc.push(target);
      await w.add(data);
      done += n;
    }
    entry.digest = `sha256:${fileHash.digest('hex')}`;
  }
  const rest = e.payload + size;
  if (e.end > rest) await w.add(await readSpool(fh, rest, e.end - rest));
}

/** Writes a landmark file, its payload starting a new member. */
async function writeLandmark(w: MemberWriter, name: string, toc: TocEntry[]): Promise<void> {
  await w.add(fileHeader(name, 1));
  await w.cut();
  const digest = `sha256:${createHash('sha256').update(LANDMARK_BYTE).digest('hex')}`;
  toc.push({ name, type: 'reg', size: 1, offset: w.offset, digest, chunkDigest: digest });
  await w.add(Buffer.concat([LANDMARK_BYTE, padding(1)]));
}

/**
 * Converts the tar layer `source` to eStargz, handing the blob's bytes to `write` in order. Input
 * entries named `stargz.index.json` or like a landmark are dropped (re-conversion is allowed).
 */
export async function convertToEstargz(source: ByteStream, write: (chunk: Buffer) => Promise<void>, options: ConvertOptions = {}): Promise<ConvertResult> {
  const chunkSize = options.chunkSize ?? 4 << 20;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new ErrInvalidArgument(`chunk size ${chunkSize} is not a positive integer`);
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'estargz-'));
  try {
    const fh = await open(join(dir, 'layer.tar'), 'w+');
    try {
      const entries = await spool(source, fh, options.signal);
      const { first, rest } = order(entries, options);
      const w = new MemberWriter(write, options.level ?? 6, Math.max(chunkSize, 1 << 20));
      const toc: TocEntry[] = [];
      for (const e of first) await writeEntry(w, fh, e, chunkSize, toc);
      await writeLandmark(w, first.length || options.prioritizedFiles?.length ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK, toc);
      for (const e of rest) {
        options.signal?.throwIfAborted();
        await writeEntry(w, fh, e, chunkSize, toc);
      }
      await w.cut();
      const tocOffset = w.offset;
      const json = serializeToc(toc);
      await w.add(Buffer.concat([fileHeader(TOC_NAME, json.length), json, padding(json.length), Buffer.alloc(2 * BLOCK)]));
      await w.cut();
      await w.raw(encodeFooter(tocOffset));
      return {
        digest: `sha256:${w.blobHash.digest('hex')}`,
        size: w.offset,
        diffID: `sha256:${w.diffHash.digest('hex')}`,
        uncompressedSize: w.uncompressed,
        tocDigest: `sha256:${createHash('sha256').update(json).digest('hex')}`,
        tocOffset,
      };
    } finally {
      await fh.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
