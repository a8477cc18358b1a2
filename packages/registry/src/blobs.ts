/**
 * Reading blobs: HEAD for size, whole-blob streams verified against the digest while they flow
 * (a dropped connection resumes with a Range request; a mismatch fails the stream before it
 * ends), and range reads for lazy access.
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ErrDigestMismatch, ErrNotFound, ErrOutOfRange, ErrRegistryResponse } from '@buildcache/errdefs';
import { repositoryScope } from './auth.js';
import { DigestVerifier } from './digest.js';
import type { Descriptor } from './manifest.js';
import { fetchedBytes, rangeRequests, registryRetries, type FetchPurpose } from './metrics.js';
import type { Reference } from './reference.js';
import { isRetryableNetworkError, responseHeader, type SendOptions, type Transport } from './transport.js';

/** Where a blob lives and what it must hash to. `size` is checked when given. */
export interface BlobLocation {
  readonly registry: string;
  readonly repository: string;
  readonly digest: string;
  readonly size?: number;
}

/** `registry/repository@digest`, for messages. */
export function blobName(b: Pick<Reference, 'registry' | 'repository'> & { digest: string }): string {
  return `${b.registry}/${b.repository}@${b.digest}`;
}

function blobRequest(t: Transport, b: BlobLocation, method: 'GET' | 'HEAD', headers: Record<string, string>, expect: number[], signal?: AbortSignal): SendOptions {
  return {
    method,
    url: t.url(b.registry, `${b.repository}/blobs/${b.digest}`),
    registry: b.registry,
    scopes: [repositoryScope(b.repository)],
    headers,
    idempotent: true,
    expect,
    kind: 'blob',
    what: blobName(b),
    digest: b.digest,
    ...(signal ? { signal } : {}),
  };
}

function mismatch(b: BlobLocation, why: string): ErrDigestMismatch {
  return new ErrDigestMismatch(`blob ${blobName(b)}: ${why}; the registry served corrupt or different content`, {
    details: { reference: blobName(b), digest: b.digest },
  });
}

/** HEAD: the blob's descriptor (size from `Content-Length`); `ErrNotFound` when absent. */
export async function headBlob(t: Transport, b: BlobLocation): Promise<Descriptor> {
  const res = await t.send(blobRequest(t, b, 'HEAD', {}, [200]));
  await res.body.dump();
  const served = responseHeader(res, 'docker-content-digest');
  if (served !== undefined && served !== b.digest) throw mismatch(b, `HEAD answered Docker-Content-Digest ${served}`);
  const size = Number(responseHeader(res, 'content-length'));
  if (!Number.isSafeInteger(size) || size < 0) throw new ErrRegistryResponse(`blob ${blobName(b)}: HEAD without a Content-Length`, { details: { reference: blobName(b), digest: b.digest } });
  if (b.size !== undefined && b.size !== size) throw mismatch(b, `size is ${size}, expected ${b.size}`);
  return { mediaType: 'application/octet-stream', digest: b.digest, size };
}

/** True when the blob exists (HEAD 200), false on 404. */
export async function blobExists(t: Transport, b: BlobLocation): Promise<boolean> {
  try {
    await headBlob(t, b);
    return true;
  } catch (err) {
    if (err instanceof ErrNotFound) return false;
    throw err;
  }
}

/** `bytes a-b/total` → numbers (`total` undefined for `*`). */
function parseContentRange(value: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), ...(m[3] !== '*' ? { total: Number(m[3]) } : {}) };
}

/** `body` without its first `skip` bytes. */
async function* skipBytes(body: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
}

/**
 * Opens the response for bytes `start..end` (inclusive; `end` undefined = to the end) and returns
 * its body from byte `start` on (the leading bytes of a 200 answer that ignored the Range header dropped).
 */
async function openRange(t: Transport, b: BlobLocation, start: number, end: number | undefined, signal?: AbortSignal): Promise<AsyncIterable<Buffer>> {
  const ranged = start > 0 || end !== undefined;
  const headers: Record<string, string> = ranged ? { range: `bytes=${start}-${end ?? ''}` } : {};
  const res = await t.send(blobRequest(t, b, 'GET', headers, ranged ? [200, 206] : [200], signal));
  if (res.statusCode === 206) {
    const cr = parseContentRange(responseHeader(res, 'content-range'));
    if (!cr || cr.start !== start || (end !== undefined && cr.end > end)) {
      res.body.destroy();
      throw new ErrRegistryResponse(`blob ${blobName(b)}: asked for bytes ${start}-${end ?? ''}, got Content-Range ${responseHeader(res, 'content-range') ?? '(none)'}`, {
        details: { reference: blobName(b), digest: b.digest },
      });
    }
    if (b.size !== undefined && cr.total !== undefined && cr.total !== b.size) {
      res.body.destroy();
      throw mismatch(b, `the registry's blob has ${cr.total} bytes, expected ${b.size}`);
    }
    return res.body;
  }
  return start > 0 ? skipBytes(res.body, start) : res.body;
}

/** Options of blob reads. */
export interface ReadOptions {
  /** Counted in `buildcache_registry_fetched_bytes_total{purpose}` (default `foreground`). */
  readonly purpose?: FetchPurpose;
  readonly signal?: AbortSignal;
}

async function* verifiedChunks(t: Transport, b: BlobLocation, o: ReadOptions, logger: Logger): AsyncGenerator<Buffer> {
  const purpose = o.purpose ?? 'foreground';
  const verifier = new DigestVerifier(b.digest);
  let received = 0;
  let held: Buffer | undefined;
  for (let failures = 0; ; ) {
    if (received > 0) rangeRequests.inc({ purpose });
    const body = await openRange(t, b, received, undefined, o.signal);
    try {
      for await (const chunk of body) {
        received += chunk.length;
        fetchedBytes.inc({ purpose }, chunk.length);
        if (b.size !== undefined && received > b.size) throw mismatch(b, `more than the expected ${b.size} bytes`);
        verifier.update(chunk);
        // hold one chunk back, so a consumer never sees every byte of a blob that fails verification
        if (held !== undefined) yield held;
        held = chunk;
      }
      break;
    } catch (err) {
      if (!isRetryableNetworkError(err) || ++failures > t.retries) throw t.wrap(err, { kind: 'blob', what: blobName(b), digest: b.digest });
      logger.warn({ err, blob: blobName(b), received }, 'blob stream broke; resuming with a range request');
      registryRetries.inc();
      await t.backoff(failures - 1);
    }
  }
  if (b.size !== undefined && received !== b.size) throw mismatch(b, `got ${received} bytes, expected ${b.size}`);
  const got = verifier.digest();
  if (got !== b.digest) throw mismatch(b, `content hashes to ${got}`);
  if (held !== undefined) yield held;
}

/** The whole blob as a stream that errors (`ErrDigestMismatch`) instead of ending when the bytes do not match. */
export function blobStream(t: Transport, b: BlobLocation, o: ReadOptions, logger: Logger): Readable {
  return Readable.from(verifiedChunks(t, b, o, logger), { objectMode: false });
}

/**
 * Bytes `offset .. offset+length` of the blob via Range GETs (retried, and continued when a
 * connection drops or a server sends fewer bytes). Range reads cannot be digest-checked; the
 * blob's total size is checked against `b.size` when the server reports it.
 */
export async function readRange(t: Transport, b: BlobLocation, offset: number, length: number, o: ReadOptions): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || (b.size !== undefined && offset + length > b.size)) {
    throw new ErrOutOfRange(`blob ${blobName(b)}: cannot read ${length} bytes at offset ${offset}${b.size !== undefined ? ` of a ${b.size}-byte blob` : ''}`, {
      details: { reference: blobName(b), digest: b.digest, offset, length },
    });
  }
  const purpose = o.purpose ?? 'foreground';
  const out = Buffer.alloc(length);
  let got = 0;
  for (let failures = 0; got < length; ) {
    rangeRequests.inc({ purpose });
    const body = await openRange(t, b, offset + got, offset + length - 1, o.signal);
    const before = got;
    try {
      for await (const chunk of body) {
        const n = Math.min(chunk.length, length - got);
        chunk.copy(out, got, 0, n);
        got += n;
        fetchedBytes.inc({ purpose }, n);
        if (got === length) break;
      }
    } catch (err) {
      if (!isRetryableNetworkError(err) || ++failures > t.retries) throw t.wrap(err, { kind: 'blob', what: blobName(b), digest: b.digest });
      registryRetries.inc();
      await t.backoff(failures - 1);
      continue;
    }
    if (got === before) {
      throw new ErrOutOfRange(`blob ${blobName(b)}: the registry has no bytes at offset ${offset + got}`, { details: { reference: blobName(b), digest: b.digest, offset, length } });
    }
  }
  return out;
}
