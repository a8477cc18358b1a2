/**
 * Opens an eStargz blob through a RangeReader: footer and TOC with as few range requests as
 * possible (usually one), the TOC digest checked against the layer annotation, then files read
 * chunk by chunk, each chunk checked against its digest before it is returned.
 */
import { createHash } from 'node:crypto';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import {
  ErrEstargzChunkDigest,
  ErrEstargzFooter,
  ErrEstargzToc,
  ErrEstargzTocDigest,
  ErrEstargzTocTooLarge,
  ErrEstargzUnverified,
  ErrNotEstargz,
  ErrNotFound,
} from '@buildcache/errdefs';
import { FOOTER_SIZE, parseFooter, type Footer } from './footer.js';
import { gunzipPrefix } from './gunzip.js';
import type { RangeReader } from './range-reader.js';
import { PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK, TOC_NAME, checkToc, type Chunk, type Toc, type TocNode } from './toc.js';
import { indexToc, type TocIndex } from './toc-index.js';

const gunzipAsync = promisify(gunzip);

/** Annotation of an eStargz layer descriptor: sha256 of its uncompressed TOC JSON. */
export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';
/** Annotation of an eStargz layer descriptor: size of the decompressed blob. */
export const UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size';

/** Options of `EstargzReader.open`. */
export interface OpenOptions {
  /** The blob's name in messages (its digest). */
  readonly name?: string;
  /** Expected TOC digest (the layer's `containerd.io/snapshot/stargz/toc.digest` annotation). */
  readonly tocDigest?: string;
  /** Verify the TOC digest (default true: a missing `tocDigest` is ErrEstargzUnverified). */
  readonly verify?: boolean;
  /** Largest TOC accepted, compressed and uncompressed (default 64 MiB). */
  readonly maxTocSize?: number;
  /** Bytes read from the end of the blob by the first request (default 64 KiB; the TOC is often inside). */
  readonly tailSize?: number;
  readonly signal?: AbortSignal;
}

/** Default `maxTocSize`. */
export const DEFAULT_MAX_TOC_SIZE = 64 << 20;

/** Metadata of one path of the layer. */
export interface EstargzStat {
  readonly path: string;
  readonly type: string;
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly modtime?: string;
  readonly linkName?: string;
  readonly digest?: string;
}

/** Reads the TOC from the end of the blob: footer, then the compressed TOC member. */
async function readTocBytes(r: RangeReader, name: string, options: OpenOptions): Promise<{ footer: Footer; json: Buffer }> {
  const signal = options.signal;
  const maxToc = options.maxTocSize ?? DEFAULT_MAX_TOC_SIZE;
  if (r.size < FOOTER_SIZE - 4) throw new ErrNotEstargz(`blob ${name} (${r.size} bytes) is too small to be eStargz`, { details: { digest: name } });
  const tailLen = Math.min(r.size, Math.max(options.tailSize ?? 64 * 1024, FOOTER_SIZE));
  const tail = await r.readAt(r.size - tailLen, tailLen, signal ? { signal } : {});
  const footer = parseFooter(tail);
  if (!footer) throw new ErrNotEstargz(`blob ${name} has no eStargz or stargz footer`, { details: { digest: name } });
  const tocEnd = r.size - footer.footerSize;
  if (footer.tocOffset >= tocEnd) {
    throw new ErrEstargzFooter(`footer of ${name} puts the TOC at ${footer.tocOffset}, outside the blob's ${tocEnd} bytes before the footer`, {
      details: { digest: name, tocOffset: footer.tocOffset, size: r.size },
    });
  }
  const tocLen = tocEnd - footer.tocOffset;
  if (tocLen > maxToc) {
    throw new ErrEstargzTocTooLarge(`compressed TOC of ${name} is ${tocLen} bytes, over the ${maxToc}-byte limit (maxTocSize)`, { details: { digest: name, size: tocLen } });
  }
  const tailStart = r.size - tailLen;
  const compressed = footer.tocOffset >= tailStart
    ? tail.subarray(footer.tocOffset - tailStart, tocEnd - tailStart)
    : await r.readAt(footer.tocOffset, tocLen, signal ? { signal } : {});
  let tar: Buffer;
  try {
    tar = await gunzipAsync(compressed, { maxOutputLength: maxToc + 512 + 1024 + 512 });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new ErrEstargzTocTooLarge(`TOC of ${name} inflates to more than the ${maxToc}-byte limit (maxTocSize)`, { cause: err, details: { digest: name } });
    }
    throw new ErrEstargzToc(`TOC of ${name} at ${footer.tocOffset} is not valid gzip: ${(err as Error).message}`, { cause: err, details: { digest: name } });
  }
  const entryName = tar.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  if (tar.length < 512 || entryName !== TOC_NAME) {
    throw new ErrEstargzToc(`TOC of ${name} does not start with a ${TOC_NAME} tar entry`, { details: { digest: name } });
  }
  const size = Number.parseInt(tar.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  if (!Number.isSafeInteger(size) || size < 0 || 512 + size > tar.length) {
    throw new ErrEstargzToc(`TOC entry of ${name} has a bad size field`, { details: { digest: name } });
  }
  if (size > maxToc) throw new ErrEstargzTocTooLarge(`TOC of ${name} is ${size} bytes, over the ${maxToc}-byte limit (maxTocSize)`, { details: { digest: name, size } });
  return { footer, json: tar.subarray(512, 512 + size) };
}

/** sha256 of `data` as `sha256:<hex>`. */
export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** An open eStargz layer: its TOC, index, and verified file reads over its RangeReader. */
export class EstargzReader {
  private constructor(
    /** Where the bytes come from. */
    readonly source: RangeReader,
    readonly name: string,
    readonly footer: Footer,
    /** sha256 of the uncompressed TOC JSON. */
    readonly tocDigest: string,
    readonly toc: Toc,
    private readonly index: TocIndex,
  ) {}

  /**
   * Reads footer and TOC, verifies the TOC digest (unless `verify: false`) and indexes it. Bad input
   * gives a typed error (ErrNotEstargz, ErrEstargzFooter, ErrEstargzToc, ErrEstargzTocTooLarge,
   * ErrEstargzUnsafeEntry, ErrEstargzTocDigest, ErrEstargzUnverified) before any file is read.
   */
  static async open(source: RangeReader, options: OpenOptions = {}): Promise<EstargzReader> {
    const name = options.name ?? 'blob';
    const verify = options.verify ?? true;
    if (verify && options.tocDigest === undefined) {
      throw new ErrEstargzUnverified(`layer ${name} has no ${TOC_DIGEST_ANNOTATION} annotation, so its TOC cannot be verified; pass verify: false to read it unverified`, {
        details: { digest: name },
      });
    }
    const { footer, json } = await readTocBytes(source, name, options);
    const tocDigest = sha256(json);
    if (verify && tocDigest !== options.tocDigest) {
      throw new ErrEstargzTocDigest(`TOC of ${name} has digest ${tocDigest}, but the layer's ${TOC_DIGEST_ANNOTATION} is ${options.tocDigest}`, {
        details: { digest: name, expected: options.tocDigest, actual: tocDigest },
      });
    }
    let doc: unknown;
    try {
      doc = JSON.parse(json.toString('utf8'));
    } catch (err) {
      throw new ErrEstargzToc(`TOC of ${name} is not JSON: ${(err as Error).message}`, { cause: err, details: { digest: name } });
    }
    const toc = checkToc(doc, name, footer.tocOffset);
    return new EstargzReader(source, name, footer, tocDigest, toc, indexToc(toc, name, footer.tocOffset, verify));
  }

  /** The node at `path` (leading `/` or `./` allowed), following no links. */
  lookup(path: string): TocNode | undefined {
    const clean = path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    return this.index.nodes.get(clean === '.' ? '' : clean);
  }

  private need(path: string): TocNode {
    const node = this.lookup(path);
    if (!node) throw new ErrNotFound(`${path} is not in layer ${this.name}`, { details: { digest: this.name, path } });
    return node;
  }

  /** Metadata of `path`; ErrNotFound when the layer does not have it. */
  stat(path: string): EstargzStat {
    const { entry, path: p } = this.need(path);
    return {
      path: p,
      type: entry.type,
      size: entry.size ?? 0,
      mode: entry.mode ?? 0,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      ...(entry.modtime !== undefined ? { modtime: entry.modtime } : {}),
      ...(entry.linkName !== undefined ? { linkName: entry.linkName } : {}),
      ...(entry.digest !== undefined ? { digest: entry.digest } : {}),
    };
  }

  /** Names in directory `path`, sorted. */
  readdir(path: string): string[] {
    const node = this.need(path);
    if (!node.children) throw new ErrNotFound(`${path} is not a directory in layer ${this.name}`, { details: { digest: this.name, path } });
    return [...node.children.keys()].sort();
  }

  /** Every chunk of the layer in blob order. */
  get chunks(): TocIndex['chunks'] {
    return this.index.chunks;
  }

  /**
   * Where prefetch ends: the offset of `.prefetch.landmark`, 0 with `.no.prefetch.landmark`, and
   * undefined for a layer with neither.
   */
  get prefetchEnd(): number | undefined {
    if (this.lookup(NO_PREFETCH_LANDMARK)) return 0;
    return this.lookup(PREFETCH_LANDMARK)?.entry.offset;
  }

  /** One chunk of `node`, decompressed and checked against its digest. */
  async readChunk(node: TocNode, chunk: Chunk, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const compressed = await this.source.readAt(chunk.offset, chunk.nextOffset - chunk.offset, options);
    const fail = (err: unknown): Error =>
      new ErrEstargzChunkDigest(`chunk ${chunk.chunkOffset} of ${node.path} in ${this.name} (offset ${chunk.offset}) is not valid gzip`, {
        cause: err,
        details: { digest: this.name, entry: node.path, offset: chunk.offset },
      });
    const plain = await gunzipPrefix(compressed, chunk.innerOffset + chunk.chunkSize, fail);
    const data = plain.subarray(chunk.innerOffset);
    if (data.length !== chunk.chunkSize) throw fail(new Error(`${data.length} of ${chunk.chunkSize} bytes`));
    if (chunk.digest !== undefined) {
      const actual = sha256(data);
      if (actual !== chunk.digest) {
        throw new ErrEstargzChunkDigest(`chunk ${chunk.chunkOffset} of ${node.path} in ${this.name} has digest ${actual}, the TOC says ${chunk.digest}; the blob is corrupt`, {
          details: { digest: this.name, entry: node.path, offset: chunk.offset, expected: chunk.digest, actual },
        });
      }
    }
    return data;
  }

  /** The regular file (or hard link to one) at `path`, chunk by chunk, each verified. */
  async *readFileChunks(path: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    let node = this.need(path);
    if (node.entry.type === 'hardlink') node = this.need(node.entry.linkName ?? '');
    if (node.entry.type !== 'reg') throw new ErrNotFound(`${path} is not a regular file in layer ${this.name}`, { details: { digest: this.name, path } });
    for (const chunk of node.chunks) yield await this.readChunk(node, chunk, options);
  }

  /** The whole regular file at `path`. */
  async readFile(path: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.readFileChunks(path, options)) parts.push(c);
    return Buffer.concat(parts);
  }
}
