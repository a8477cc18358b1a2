/**
 * The embedded content store: blobs at `<root>/content/blobs/sha256/<hex>`, resumable ingests under
 * `<root>/content/ingest/`, labels and timestamps in LevelDB. The blob file is the truth for
 * existence; a blob without a record (a crash between rename and record) has no labels.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrInvalidArgument, ErrNotFound, ErrOutOfRange, ErrUnavailable } from '@buildcache/errdefs';
import type { ContentInfo, ContentStore, ContentWriter, IngestStatus, LeasedOptions } from '../types.js';
import type { EmbeddedContext } from './context.js';
import { SYNC, applyLabelUpdate, checkName, cleanLabels, keys, writeBatch } from './db.js';
import type { BatchOp } from './db.js';
import { compileFilters, fieldsAdaptor } from './filters.js';
import { fsyncPath } from '@buildcache/sys';
import { removeTree } from './fsutil.js';
import { IngestWriter, ensureIngest, ingestDir, ingestNotFound, listIngests, readIngest } from './content-ingest.js';
import type { CommitRequest } from './content-ingest.js';
import { assertLease, delResource, putResource } from './leases.js';

/** How long an ingest opened without a lease survives (containerd: 24 h from its last open). */
export const UNLEASED_INGEST_TTL_MS = 24 * 60 * 60 * 1000;

/** Labels and timestamps of one blob as stored. */
export interface BlobRecord {
  readonly labels: Record<string, string>;
  readonly created: number;
  readonly updated: number;
}

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/** The hex part of a valid sha256 digest, else ErrInvalidArgument. */
export function digestHex(digest: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new ErrInvalidArgument(`${JSON.stringify(digest)} failed validation`, { details: { digest } });
  return m[1]!;
}

function isENOENT(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** containerd-compatible content store over one root. */
export class EmbeddedContentStore implements ContentStore {
  /** Refs with an open writer, and since when. */
  private readonly locks = new Map<string, number>();
  /** Blobs GC has decided to delete and is unlinking; a commit of the same digest waits. */
  private readonly deleting = new Map<string, Promise<void>>();
  readonly blobRoot: string;
  readonly ingestRoot: string;

  constructor(private readonly ctx: EmbeddedContext) {
    this.blobRoot = join(ctx.root, 'content', 'blobs', 'sha256');
    this.ingestRoot = join(ctx.root, 'content', 'ingest');
  }

  /** Path of a blob file. */
  blobPath(digest: string): string {
    return join(this.blobRoot, digestHex(digest));
  }

  async info(digest: string): Promise<ContentInfo> {
    const st = await this.statBlob(digest);
    const rec = (await this.ctx.db.get(keys.blob(digest))) as BlobRecord | undefined;
    return {
      digest,
      size: st.size,
      createdAt: new Date(rec?.created ?? st.mtimeMs),
      updatedAt: new Date(rec?.updated ?? st.mtimeMs),
      labels: { ...(rec?.labels ?? {}) },
    };
  }

  async update(info: { digest: string; labels: Readonly<Record<string, string>> }, fieldpaths?: readonly string[]): Promise<ContentInfo> {
    await this.ctx.mutex(async () => {
      const st = await this.statBlob(info.digest);
      const rec = (await this.ctx.db.get(keys.blob(info.digest))) as BlobRecord | undefined;
      const labels = applyLabelUpdate(rec?.labels ?? {}, info.labels, fieldpaths, `content ${info.digest}`);
      const next: BlobRecord = { labels, created: rec?.created ?? st.mtimeMs, updated: this.ctx.clock() };
      await this.ctx.db.put(keys.blob(info.digest), next, SYNC);
    });
    return this.info(info.digest);
  }

  async *walk(filters?: readonly string[]): AsyncIterable<ContentInfo> {
    const filter = compileFilters(filters);
    for (const digest of await this.listBlobDigests()) {
      let info: ContentInfo;
      try {
        info = await this.info(digest);
      } catch (err) {
        if (err instanceof ErrNotFound) continue;
        throw err;
      }
      if (filter.match(fieldsAdaptor({ digest, size: String(info.size) }, info.labels))) yield info;
    }
  }

  async delete(digest: string): Promise<void> {
    const path = this.blobPath(digest);
    await this.ctx.mutex(async () => {
      await this.statBlob(digest);
      await this.ctx.db.del(keys.blob(digest), SYNC);
      await unlink(path).catch((err: unknown) => {
        if (!isENOENT(err)) throw err;
      });
    });
  }

  async *read(digest: string, range?: { offset?: number; length?: number }): AsyncIterable<Uint8Array> {
    const st = await this.statBlob(digest);
    const offset = range?.offset ?? 0;
    const length = range?.length ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new ErrInvalidArgument(`invalid read range ${offset}+${length} of ${digest}`, { details: { digest } });
    }
    if (offset > st.size) throw new ErrOutOfRange(`read past object length ${st.size} bytes`, { details: { digest } });
    const end = length === 0 ? st.size : Math.min(st.size, offset + length);
    if (end <= offset) return;
    for await (const chunk of createReadStream(this.blobPath(digest), { start: offset, end: end - 1, highWaterMark: 1 << 20 })) {
      yield chunk as Buffer;
    }
  }

  /**
   * Opens or resumes ingest `ref`. When `expected` already exists the blob is added to the lease
   * and the writer returned has `exists` set: writes are ignored and commit succeeds (as containerd's
   * client does); a second open writer on `ref` gets ErrUnavailable.
   */
  async writer(ref: string, options?: LeasedOptions & { expected?: string; total?: number }): Promise<ContentWriter> {
    checkName('ingest ref', ref);
    const lease = options?.lease;
    const expected = options?.expected;
    if (expected !== undefined && expected !== '') digestHex(expected);
    const dir = ingestDir(this.ingestRoot, ref);
    const existing = await this.ctx.mutex(async () => {
      if (lease !== undefined) await assertLease(this.ctx.db, lease);
      if (expected && (await this.exists(expected))) {
        if (lease !== undefined) await writeBatch(this.ctx.db, [putResource(lease, 'content', expected)]);
        return expected;
      }
      const since = this.locks.get(ref);
      if (since !== undefined) {
        throw new ErrUnavailable(`ref ${ref} locked for ${Date.now() - since}ms (since ${new Date(since).toISOString()})`, { details: { id: ref } });
      }
      this.locks.set(ref, Date.now());
      try {
        const now = this.ctx.clock();
        await ensureIngest(dir, ref, now, options?.total, expected, lease === undefined ? now + UNLEASED_INGEST_TTL_MS : undefined);
        if (lease !== undefined) await writeBatch(this.ctx.db, [putResource(lease, 'ingests', ref)]);
      } catch (err) {
        this.locks.delete(ref);
        throw err;
      }
      return undefined;
    });
    if (existing) return existingBlobWriter(existing, (await this.info(existing)).size);
    const status = await readIngest(dir);
    const defaults = {
      ...(options?.total ?? status?.total ? { total: options?.total ?? status?.total } : {}),
      ...(expected || status?.expected ? { expected: expected || status?.expected } : {}),
    };
    try {
      return await IngestWriter.open(ref, dir, defaults, (req) => this.finishCommit(req, lease), () => this.locks.delete(ref));
    } catch (err) {
      this.locks.delete(ref);
      throw err;
    }
  }

  async status(ref: string): Promise<IngestStatus> {
    const status = await readIngest(ingestDir(this.ingestRoot, ref));
    if (!status) throw ingestNotFound(ref);
    return status;
  }

  async listStatuses(filters?: readonly string[]): Promise<IngestStatus[]> {
    const filter = compileFilters(filters);
    const out: IngestStatus[] = [];
    for (const { status } of await listIngests(this.ingestRoot)) {
      if (status && filter.match(fieldsAdaptor({ ref: status.ref, expected: status.expected }, {}))) out.push(status);
    }
    return out;
  }

  async abort(ref: string): Promise<void> {
    const dir = ingestDir(this.ingestRoot, ref);
    await this.ctx.mutex(async () => {
      if (!(await readIngest(dir))) throw ingestNotFound(ref);
      await removeTree(dir);
    });
  }

  /** True while a writer holds `ref` (GC leaves such ingests alone). */
  isLocked(ref: string): boolean {
    return this.locks.has(ref);
  }

  /** Digests of every blob file on disk. */
  async listBlobDigests(): Promise<string[]> {
    try {
      return (await readdir(this.blobRoot)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
    } catch (err) {
      if (isENOENT(err)) return [];
      throw err;
    }
  }

  /** Called by GC (under the mutex) before unlinking blobs: commits of these digests wait for `done`. */
  markDeleting(digests: readonly string[], done: Promise<void>): void {
    for (const d of digests) this.deleting.set(d, done);
    void done.finally(() => {
      for (const d of digests) if (this.deleting.get(d) === done) this.deleting.delete(d);
    });
  }

  private async exists(digest: string): Promise<boolean> {
    await this.deleting.get(digest);
    try {
      await stat(this.blobPath(digest));
      return true;
    } catch (err) {
      if (isENOENT(err)) return false;
      throw err;
    }
  }

  private async statBlob(digest: string): Promise<{ size: number; mtimeMs: number }> {
    const path = this.blobPath(digest);
    try {
      return await stat(path);
    } catch (err) {
      if (isENOENT(err)) throw new ErrNotFound(`content digest ${digest}: not found`, { cause: err, details: { digest } });
      throw err;
    }
  }

  /** Moves verified ingest data into place (or finds the blob there) and leases it, atomically in the DB. */
  private async finishCommit(req: CommitRequest, lease: string | undefined): Promise<string> {
    const labels = cleanLabels(req.labels, `content ${req.digest}`);
    await this.ctx.mutex(async () => {
      if (lease !== undefined) await assertLease(this.ctx.db, lease);
      const leaseOps: BatchOp[] = lease === undefined ? [] : [putResource(lease, 'content', req.digest), delResource(lease, 'ingests', req.ref)];
      if (await this.exists(req.digest)) {
        if (leaseOps.length) await writeBatch(this.ctx.db, leaseOps);
      } else {
        await mkdir(this.blobRoot, { recursive: true });
        try {
          await rename(join(req.dir, 'data'), join(this.blobRoot, digestHex(req.digest)));
        } catch (err) {
          if (isENOENT(err)) throw ingestNotFound(req.ref);
          throw err;
        }
        await fsyncPath(this.blobRoot);
        const now = this.ctx.clock();
        const rec: BlobRecord = { labels, created: now, updated: now };
        await writeBatch(this.ctx.db, [{ type: 'put', key: keys.blob(req.digest), value: rec }, ...leaseOps]);
      }
      await removeTree(req.dir);
    });
    return req.digest;
  }
}

/** The writer handed out when the expected blob is already stored (and now leased). */
function existingBlobWriter(digest: string, size: number): ContentWriter {
  return {
    offset: size,
    exists: true,
    write: async () => undefined,
    commit: async () => digest,
    close: async () => undefined,
  };
}
