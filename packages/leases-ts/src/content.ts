/** The Content service: blobs by digest, read as ranges, written through resumable ingests. */
import { checkLabels, checkNonEmpty, checkUint, protocolError, toNumber } from './errors.js';
import type { CallContext } from './errors.js';
import { labelsOf, toDate } from './convert.js';
import type { WireTimestamp } from './convert.js';
import { ContentWriter } from './content-writer.js';
import type { CommitOptions, WriterOptions } from './content-writer.js';
import type { Scope } from './transport.js';
import type { CallOptions, ContentInfo, IngestStatus, Labels } from './types.js';

interface WireInfo {
  digest: string;
  size: string;
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  labels: Record<string, string>;
}

interface WireStatus {
  started_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  ref: string;
  offset: string;
  total: string;
  expected: string;
}

/** A byte range: `length` omitted or 0 means up to the end of the blob. */
export interface ReadRange {
  readonly offset?: number;
  readonly length?: number;
}

function toInfo(w: WireInfo | null | undefined, ctx: CallContext): ContentInfo {
  if (!w) throw protocolError('the daemon sent no content info', ctx);
  return {
    digest: w.digest,
    size: toNumber(w.size, 'size', ctx),
    createdAt: toDate(w.created_at),
    updatedAt: toDate(w.updated_at),
    labels: labelsOf(w.labels),
  };
}

function toStatus(w: WireStatus | null | undefined, ctx: CallContext): IngestStatus {
  if (!w) throw protocolError('the daemon sent no ingest status', ctx);
  return {
    ref: w.ref,
    offset: toNumber(w.offset, 'offset', ctx),
    total: toNumber(w.total, 'total', ctx),
    ...(w.expected ? { expected: w.expected } : {}),
    startedAt: toDate(w.started_at),
    updatedAt: toDate(w.updated_at),
  };
}

/** Typed wrapper of containerd.services.content.v1.Content. */
export class ContentService {
  constructor(private readonly scope: Scope) {}

  /** What the store knows of blob `digest`. */
  async info(digest: string, options?: CallOptions): Promise<ContentInfo> {
    const ctx: CallContext = { method: 'Content/Info', digest };
    checkNonEmpty(digest, 'digest', ctx);
    const res = await this.scope.unary<{ info: WireInfo | null }>('content', 'Info', { digest }, ctx, options);
    return toInfo(res.info, ctx);
  }

  /** Changes a blob's labels: with `fieldpaths` (`labels.<k>`) only those, else all of them. */
  async update(info: { digest: string; labels: Labels }, fieldpaths: readonly string[] = [], options?: CallOptions): Promise<ContentInfo> {
    const ctx: CallContext = { method: 'Content/Update', digest: info.digest };
    checkNonEmpty(info.digest, 'digest', ctx);
    checkLabels(info.labels, ctx);
    const req = {
      info: { digest: info.digest, labels: { ...info.labels } },
      update_mask: fieldpaths.length ? { paths: [...fieldpaths] } : null,
    };
    const res = await this.scope.unary<{ info: WireInfo | null }>('content', 'Update', req, ctx, options);
    return toInfo(res.info, ctx);
  }

  /** Every blob, or those matching any of `filters` (server stream). */
  async *list(filters: readonly string[] = [], options?: CallOptions): AsyncGenerator<ContentInfo, void, undefined> {
    const ctx: CallContext = { method: 'Content/List' };
    const stream = this.scope.serverStream<{ info: WireInfo[] }>('content', 'List', { filters: [...filters] }, ctx, options);
    for await (const batch of stream) for (const info of batch.info) yield toInfo(info, ctx);
  }

  /** Deletes blob `digest` from this namespace (disk is freed by GC). */
  async delete(digest: string, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Content/Delete', digest };
    checkNonEmpty(digest, 'digest', ctx);
    await this.scope.unary('content', 'Delete', { digest }, ctx, options);
  }

  /**
   * Streams `[offset, offset+length)` of a blob (to the end when `length` is omitted or 0). An offset
   * past the end fails with ErrOutOfRange. The daemon numbers its chunks relative to the requested
   * offset; absolute numbering is accepted too, anything else is a protocol error.
   */
  async *read(digest: string, range: ReadRange = {}, options?: CallOptions): AsyncGenerator<Buffer, void, undefined> {
    const ctx: CallContext = { method: 'Content/Read', digest };
    checkNonEmpty(digest, 'digest', ctx);
    const offset = checkUint(range.offset ?? 0, 'offset', ctx);
    const size = checkUint(range.length ?? 0, 'length', ctx);
    let received = 0;
    const stream = this.scope.serverStream<{ offset: string; data: Buffer }>('content', 'Read', { digest, offset, size }, ctx, options);
    for await (const chunk of stream) {
      const at = toNumber(chunk.offset, 'offset', ctx);
      if (at !== received && at !== offset + received) {
        throw protocolError(`chunk at ${at} does not follow ${received} bytes read from ${offset}`, ctx, { offset: at });
      }
      received += chunk.data.length;
      if (chunk.data.length) yield chunk.data;
    }
  }

  /** Reads a range (or the whole blob) into one buffer. */
  async readBlob(digest: string, range: ReadRange = {}, options?: CallOptions): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.read(digest, range, options)) parts.push(chunk);
    return Buffer.concat(parts);
  }

  /** Opens (or resumes) ingest `ref`; see `ContentWriter`. Send a lease to keep what it writes. */
  writer(ref: string, options: WriterOptions = {}): Promise<ContentWriter> {
    return ContentWriter.open(this.scope, ref, options);
  }

  /**
   * Writes a whole blob through ingest `ref` and commits it; returns its digest. A resumable
   * partial ingest continues where it stopped (buffer input) or starts over (stream input). A blob
   * that already exists counts as success.
   */
  async writeBlob(
    ref: string,
    data: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: WriterOptions & CommitOptions = {},
  ): Promise<string> {
    const total = options.total ?? options.size ?? (data instanceof Uint8Array ? data.byteLength : 0);
    const w = await this.writer(ref, { ...options, total });
    if (w.exists) return w.commit(options);
    try {
      if (data instanceof Uint8Array) {
        const from = w.offset <= data.byteLength ? w.offset : 0;
        await w.write(data.subarray(from), from);
      } else {
        let first = true;
        for await (const chunk of data) {
          await w.write(chunk, first ? 0 : undefined);
          first = false;
        }
      }
      return await w.commit({ ...options, size: total });
    } catch (err) {
      w.cancel();
      throw err;
    }
  }

  /** Progress of ingest `ref`. */
  async status(ref: string, options?: CallOptions): Promise<IngestStatus> {
    const ctx: CallContext = { method: 'Content/Status', ref };
    checkNonEmpty(ref, 'ref', ctx);
    const res = await this.scope.unary<{ status: WireStatus | null }>('content', 'Status', { ref }, ctx, options);
    return toStatus(res.status, ctx);
  }

  /** Every unfinished ingest, or those matching any of `filters` (e.g. `ref~=^prefix-`). */
  async listStatuses(filters: readonly string[] = [], options?: CallOptions): Promise<IngestStatus[]> {
    const ctx: CallContext = { method: 'Content/ListStatuses' };
    const res = await this.scope.unary<{ statuses: WireStatus[] }>('content', 'ListStatuses', { filters: [...filters] }, ctx, options);
    return res.statuses.map((s) => toStatus(s, ctx));
  }

  /** Drops ingest `ref` and its data (ErrNotFound if there is none). */
  async abort(ref: string, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Content/Abort', ref };
    checkNonEmpty(ref, 'ref', ctx);
    await this.scope.unary('content', 'Abort', { ref }, ctx, options);
  }
}
