/**
 * Uploading blobs: HEAD first (an existing blob is not sent), cross-repository mount when a
 * source repository is named, then a monolithic PUT or PATCH chunks + closing PUT. Any failure
 * of a session cancels it and, for outages, starts a new session from the beginning.
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { ErrDigestMismatch, ErrRegistryResponse, ErrUnauthorized, ErrUnavailable } from '@buildcache/errdefs';
import { repositoryScope } from './auth.js';
import { blobExists, blobName, type BlobLocation } from './blobs.js';
import { DigestVerifier, digestOf } from './digest.js';
import type { Descriptor } from './manifest.js';
import { pushedBytes } from './metrics.js';
import { responseHeader, type SendOptions, type Transport } from './transport.js';

/** Blob content: bytes in memory, or a factory giving a fresh stream for each (re)try. */
export type BlobSource = Uint8Array | (() => Readable | AsyncIterable<Uint8Array>);

/** Options of `pushBlob`. */
export interface PushBlobOptions {
  /** A repository on the same registry that may hold the blob: mounted from there instead of uploaded. */
  readonly mountFrom?: string;
  /** Upload in PATCH chunks of this many bytes (default: one PUT). */
  readonly chunkSize?: number;
}

/** How a blob got to the registry. */
export interface PushedBlob {
  readonly descriptor: Descriptor;
  readonly status: 'exists' | 'mounted' | 'uploaded';
}

type Target = BlobLocation & { readonly size: number; readonly mediaType: string };

function mismatch(b: Target, why: string): ErrDigestMismatch {
  return new ErrDigestMismatch(`blob ${blobName(b)}: the content to push ${why}; nothing was stored`, { details: { reference: blobName(b), digest: b.digest } });
}

/** Hashes and counts the source while it is sent; throws (ending the upload) when it differs from `b`. */
async function* checked(src: AsyncIterable<Uint8Array>, b: Target, fail: (e: ErrDigestMismatch) => void): AsyncGenerator<Uint8Array> {
  const v = new DigestVerifier(b.digest);
  let n = 0;
  for await (const chunk of src) {
    n += chunk.length;
    if (n > b.size) {
      const e = mismatch(b, `is longer than ${b.size} bytes`);
      fail(e);
      throw e;
    }
    v.update(chunk);
    yield chunk;
  }
  const got = v.digest();
  if (n !== b.size || got !== b.digest) {
    const e = mismatch(b, n !== b.size ? `has ${n} bytes, not ${b.size}` : `hashes to ${got}`);
    fail(e);
    throw e;
  }
}

async function* inChunks(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of src) {
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(size - n, chunk.length - at);
      parts.push(chunk.subarray(at, at + take));
      n += take;
      at += take;
      if (n === size) {
        yield Buffer.concat(parts);
        parts = [];
        n = 0;
      }
    }
  }
  if (n > 0) yield Buffer.concat(parts);
}

class Upload {
  private readonly scopes: string[];
  constructor(private readonly t: Transport, private readonly b: Target) {
    this.scopes = [repositoryScope(b.repository, true)];
  }

  req(method: SendOptions['method'], url: URL, expect: number[], extra: Partial<SendOptions> = {}): SendOptions {
    return { method, url, registry: this.b.registry, scopes: this.scopes, idempotent: false, expect, kind: 'blob upload', what: blobName(this.b), digest: this.b.digest, ...extra };
  }

  /** POST (with `mount`/`from` when asked): the upload Location, or undefined when the registry mounted the blob. */
  async start(mountFrom: string | undefined): Promise<URL | undefined> {
    const url = this.t.url(this.b.registry, `${this.b.repository}/blobs/uploads/`);
    if (mountFrom !== undefined) {
      url.searchParams.set('mount', this.b.digest);
      url.searchParams.set('from', mountFrom);
      this.scopes.push(repositoryScope(mountFrom));
    }
    let res;
    try {
      res = await this.t.send(this.req('POST', url, [201, 202]));
    } catch (err) {
      if (mountFrom === undefined || !(err instanceof ErrUnauthorized)) throw err;
      this.scopes.pop(); // no pull access to the source: upload normally
      return this.start(undefined);
    }
    await res.body.dump();
    if (res.statusCode === 201) return undefined;
    return this.location(res, url);
  }

  location(res: Dispatcher.ResponseData, base: URL): URL {
    const loc = responseHeader(res, 'location');
    if (loc === undefined) throw new ErrRegistryResponse(`blob upload ${blobName(this.b)}: the registry gave no upload Location`, { details: { reference: blobName(this.b) } });
    return new URL(loc, base);
  }

  async monolithic(location: URL, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    const payload = body instanceof Uint8Array ? body : Readable.from(body, { objectMode: false });
    const url = new URL(location);
    url.searchParams.set('digest', this.b.digest);
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(this.b.size) };
    await this.finish(await this.t.send(this.req('PUT', url, [201], { headers, body: payload })));
  }

  async chunked(location: URL, src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, chunkSize: number): Promise<void> {
    let url = location;
    let offset = 0;
    for await (const chunk of inChunks(src, chunkSize)) {
      const end = offset + chunk.length - 1;
      const headers = { 'content-type': 'application/octet-stream', 'content-length': String(chunk.length), 'content-range': `${offset}-${end}` };
      const res = await this.t.send(this.req('PATCH', url, [202], { headers, body: chunk }));
      await res.body.dump();
      const range = responseHeader(res, 'range');
      if (range !== undefined && range !== `0-${end}`) {
        throw new ErrRegistryResponse(`blob upload ${blobName(this.b)}: after bytes 0-${end} the registry holds ${range}`, { details: { reference: blobName(this.b) } });
      }
      url = this.location(res, url);
      offset = end + 1;
    }
    const close = new URL(url);
    close.searchParams.set('digest', this.b.digest);
    await this.finish(await this.t.send(this.req('PUT', close, [201], { headers: { 'content-type': 'application/octet-stream', 'content-length': '0' } })));
  }

  private async finish(res: Dispatcher.ResponseData): Promise<void> {
    await res.body.dump();
    const stored = responseHeader(res, 'docker-content-digest');
    if (stored !== undefined && stored !== this.b.digest) {
      throw new ErrDigestMismatch(`blob ${blobName(this.b)}: the registry stored ${stored}`, { details: { reference: blobName(this.b), digest: this.b.digest } });
    }
  }

  /** Best effort: DELETE the session so the registry can drop partial data. */
  async cancel(location: URL | undefined): Promise<void> {
    if (location === undefined) return;
    try {
      const res = await this.t.send(this.req('DELETE', location, [200, 202, 204, 404]));
      await res.body.dump();
    } catch {
      // the registry purges stale uploads itself
    }
  }
}

/** Pushes one blob; see `RegistryClient.pushBlob`. */
export async function pushBlob(t: Transport, b: Target, source: BlobSource, o: PushBlobOptions, logger: Logger): Promise<PushedBlob> {
  const descriptor: Descriptor = { mediaType: b.mediaType, digest: b.digest, size: b.size };
  if (source instanceof Uint8Array) {
    if (source.length !== b.size) throw mismatch(b, `has ${source.length} bytes, not ${b.size}`);
    const got = digestOf(source, b.digest.split(':')[0]);
    if (got !== b.digest) throw mismatch(b, `hashes to ${got}`);
  }
  if (await blobExists(t, b)) return { descriptor, status: 'exists' };
  for (let attempt = 0; ; attempt++) {
    const up = new Upload(t, b);
    let location: URL | undefined;
    let bad: ErrDigestMismatch | undefined;
    try {
      location = await up.start(o.mountFrom);
      if (location === undefined) return { descriptor, status: 'mounted' };
      const body = source instanceof Uint8Array ? source : checked(source(), b, (e) => (bad = e));
      if (o.chunkSize !== undefined && o.chunkSize > 0 && b.size > o.chunkSize) {
        await up.chunked(location, body instanceof Uint8Array ? [body] : body, o.chunkSize);
      } else {
        await up.monolithic(location, body);
      }
      pushedBytes.inc(b.size);
      return { descriptor, status: 'uploaded' };
    } catch (err) {
      await up.cancel(location);
      if (bad !== undefined) throw bad;
      if (!(err instanceof ErrUnavailable) || attempt >= t.retries) throw err;
      logger.warn({ err, blob: blobName(b), attempt }, 'blob upload failed; starting it again');
      await t.backoff(attempt);
    }
  }
}
