/**
 * `RegistryClient`: the public face of the package. One client holds a connection pool, the
 * auth state (challenges, tokens per scope) and a concurrency bound; share it.
 */
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { ErrDigestMismatch, ErrInvalidArgument, ErrNotFound, ErrRegistryResponse } from '@buildcache/errdefs';
import { repositoryScope } from './auth.js';
import { blobExists, blobStream, headBlob, readRange, type BlobLocation, type ReadOptions } from './blobs.js';
import { dockerConfigCredentials, type CredentialsProvider } from './credentials.js';
import { assertDigest, digestOf } from './digest.js';
import {
  MANIFEST_TYPES, defaultPlatform, formatPlatform, isIndexType, selectPlatform,
  type Descriptor, type ImageIndex, type ImageManifest, type Platform,
} from './manifest.js';
import { resolveSeconds } from './metrics.js';
import { pushBlob, type BlobSource, type PushBlobOptions, type PushedBlob } from './push.js';
import { formatReference, toReference, type Reference } from './reference.js';
import { responseHeader, Transport } from './transport.js';

/** Options of a `RegistryClient`; every field has a default. */
export interface RegistryClientOptions {
  readonly logger?: Logger;
  /** Registries (`host[:port]` as in references) spoken to over plain http; loopback always is. */
  readonly insecure?: readonly string[];
  /** Credentials per registry; default: Docker's config.json (`DOCKER_CONFIG` or `~/.docker`). */
  readonly credentials?: CredentialsProvider;
  /** Platform picked from image indexes; default linux/<this machine's architecture>. */
  readonly platform?: Platform;
  /** Retries of idempotent requests and restarts of uploads (default 4). */
  readonly retries?: number;
  /** First backoff delay in ms, doubled per retry with jitter (default 200). */
  readonly retryDelayMs?: number;
  /** Requests in flight at once, and connections per registry (default 8). */
  readonly concurrency?: number;
  /** Headers and body inactivity timeout in ms (default 60000). */
  readonly timeoutMs?: number;
}

/** A manifest as served: exact bytes, its descriptor (digest of those bytes) and the parsed JSON. */
export interface FetchedManifest {
  readonly descriptor: Descriptor;
  readonly bytes: Buffer;
  readonly manifest: ImageManifest | ImageIndex;
}

/** A reference resolved to one image manifest (via an index when the reference names one). */
export interface ResolvedImage {
  /** The reference with `digest` set to what the tag pointed at (the index's digest for multi-platform images). */
  readonly reference: Reference;
  /** The image manifest chosen (for the platform). */
  readonly descriptor: Descriptor;
  readonly manifest: ImageManifest;
  readonly bytes: Buffer;
  /** The index the manifest was chosen from, when the reference named one. */
  readonly index?: FetchedManifest;
}

/** A blob opened for lazy reads: its size is known, bytes come by range on demand. */
export interface RemoteBlob {
  readonly descriptor: Descriptor;
  readonly size: number;
  /** Bytes `offset .. offset+length` (`ErrOutOfRange` past the end). */
  readAt(offset: number, length: number, options?: ReadOptions): Promise<Buffer>;
  /** The whole blob, verified against the digest as it streams. */
  stream(options?: ReadOptions): Readable;
}

/** Client of OCI distribution registries (Docker Registry HTTP API v2). */
export class RegistryClient {
  private readonly t: Transport;
  private readonly logger: Logger;
  private readonly platform: Platform;

  constructor(options: RegistryClientOptions = {}) {
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'registry' });
    this.platform = options.platform ?? defaultPlatform();
    this.t = new Transport({
      insecure: options.insecure ?? [],
      retries: options.retries ?? 4,
      retryDelayMs: options.retryDelayMs ?? 200,
      concurrency: options.concurrency ?? 8,
      timeoutMs: options.timeoutMs ?? 60_000,
      userAgent: `buildcache-registry/0.1.0 (${hostname()})`,
      credentials: options.credentials ?? dockerConfigCredentials(),
      logger: this.logger,
    });
  }

  /** Tokens fetched so far from token services (a cache hit fetches none). */
  get tokenFetches(): number {
    return this.t.auth.tokenFetches;
  }

  /**
   * The manifest a tag or digest names, exactly as stored (index or image manifest). Verified
   * against the reference's digest, else against `Docker-Content-Digest` when the registry sends it.
   */
  async getManifest(ref: string | Reference): Promise<FetchedManifest> {
    const r = toReference(ref);
    const what = formatReference(r);
    const tagOrDigest = r.digest ?? r.tag;
    if (tagOrDigest === undefined) throw new ErrInvalidArgument(`manifest ${what}: the reference needs a tag or a digest`, { details: { reference: what } });
    const res = await this.t.send({
      method: 'GET',
      url: this.t.url(r.registry, `${r.repository}/manifests/${tagOrDigest}`),
      registry: r.registry,
      scopes: [repositoryScope(r.repository)],
      headers: { accept: MANIFEST_TYPES.join(', ') },
      idempotent: true,
      expect: [200],
      kind: 'manifest',
      what,
      ...(r.digest ? { digest: r.digest } : {}),
    });
    const bytes = Buffer.from(await res.body.arrayBuffer().catch((err: unknown) => {
      throw this.t.wrap(err, { kind: 'manifest', what });
    }));
    const served = responseHeader(res, 'docker-content-digest');
    const expected = r.digest ?? served;
    const digest = digestOf(bytes, expected?.split(':')[0] ?? 'sha256');
    if (expected !== undefined && digest !== expected) {
      throw new ErrDigestMismatch(`manifest ${what}: the bytes served hash to ${digest}, expected ${expected}`, { details: { reference: what, digest: expected } });
    }
    let manifest: ImageManifest | ImageIndex;
    try {
      manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
    } catch (err) {
      throw new ErrRegistryResponse(`manifest ${what}: not JSON`, { cause: err, details: { reference: what, digest } });
    }
    const contentType = responseHeader(res, 'content-type')?.split(';')[0]?.trim();
    const mediaType = manifest.mediaType ?? (contentType && contentType !== 'application/json' ? contentType : undefined);
    if (mediaType === undefined || !MANIFEST_TYPES.includes(mediaType) || (manifest.mediaType !== undefined && contentType !== undefined && MANIFEST_TYPES.includes(contentType) && contentType !== manifest.mediaType)) {
      throw new ErrRegistryResponse(`manifest ${what}: unsupported or inconsistent media type (Content-Type ${contentType ?? 'none'}, body ${manifest.mediaType ?? 'none'}); supported: ${MANIFEST_TYPES.join(', ')}`, {
        details: { reference: what, digest },
      });
    }
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes, manifest };
  }

  /** HEAD a manifest: its descriptor without the body (`ErrNotFound` when absent). */
  async headManifest(ref: string | Reference): Promise<Descriptor> {
    const r = toReference(ref);
    const what = formatReference(r);
    const res = await this.t.send({
      method: 'HEAD',
      url: this.t.url(r.registry, `${r.repository}/manifests/${r.digest ?? r.tag ?? ''}`),
      registry: r.registry,
      scopes: [repositoryScope(r.repository)],
      headers: { accept: MANIFEST_TYPES.join(', ') },
      idempotent: true,
      expect: [200],
      kind: 'manifest',
      what,
    });
    await res.body.dump();
    const digest = responseHeader(res, 'docker-content-digest') ?? r.digest;
    const size = Number(responseHeader(res, 'content-length'));
    const mediaType = responseHeader(res, 'content-type')?.split(';')[0]?.trim();
    if (digest === undefined || !Number.isSafeInteger(size) || mediaType === undefined) {
      throw new ErrRegistryResponse(`manifest ${what}: HEAD lacks Docker-Content-Digest, Content-Length or Content-Type; use getManifest`, { details: { reference: what } });
    }
    if (r.digest !== undefined && digest !== r.digest) throw new ErrDigestMismatch(`manifest ${what}: HEAD answered digest ${digest}`, { details: { reference: what, digest: r.digest } });
    return { mediaType, digest, size };
  }

  /**
   * Resolves a reference to an image manifest: an index / manifest list is followed to the entry
   * for `platform` (default: the client's), nested indexes too. `ErrNotFound` when no entry fits.
   */
  async resolve(ref: string | Reference, options: { platform?: Platform } = {}): Promise<ResolvedImage> {
    const started = performance.now();
    const r = toReference(ref);
    const platform = options.platform ?? this.platform;
    const top = await this.getManifest(r);
    let current = top;
    let index: FetchedManifest | undefined;
    for (let depth = 0; isIndexType(current.descriptor.mediaType); depth++) {
      const what = `${formatReference({ ...r, digest: current.descriptor.digest })}`;
      if (depth >= 4) throw new ErrRegistryResponse(`manifest ${what}: indexes nested deeper than 4`, { details: { reference: what } });
      const entry = selectPlatform(current.manifest as ImageIndex, platform);
      if (entry === undefined) {
        const offered = (current.manifest as ImageIndex).manifests.flatMap((d) => (d.platform ? [formatPlatform(d.platform)] : [])).join(', ');
        throw new ErrNotFound(`manifest ${what}: no entry for platform ${formatPlatform(platform)} (index offers: ${offered || 'none'}); pass another platform`, {
          details: { reference: what, digest: current.descriptor.digest, platform: formatPlatform(platform) },
        });
      }
      index ??= current;
      current = await this.getManifest({ registry: r.registry, repository: r.repository, digest: entry.digest });
      if (current.descriptor.size !== entry.size) {
        throw new ErrDigestMismatch(`manifest ${formatReference({ ...r, digest: entry.digest })}: ${current.descriptor.size} bytes, the index says ${entry.size}`, { details: { reference: what, digest: entry.digest } });
      }
    }
    resolveSeconds.observe((performance.now() - started) / 1000);
    return {
      reference: { registry: r.registry, repository: r.repository, ...(r.tag !== undefined ? { tag: r.tag } : {}), digest: top.descriptor.digest },
      descriptor: current.descriptor,
      manifest: current.manifest as ImageManifest,
      bytes: current.bytes,
      ...(index ? { index } : {}),
    };
  }

  /** HEAD a blob: its size (`ErrNotFound` when absent). */
  async headBlob(ref: string | Reference, digest: string): Promise<Descriptor> {
    return headBlob(this.t, this.blob(ref, digest));
  }

  /** True when the repository has the blob. */
  async blobExists(ref: string | Reference, digest: string): Promise<boolean> {
    return blobExists(this.t, this.blob(ref, digest));
  }

  /**
   * The whole blob as a stream, verified while it flows: a dropped connection resumes by range;
   * content that does not hash to the digest (or size, when given) errors the stream with
   * `ErrDigestMismatch` before it ends. Registry errors reach the stream's consumer; a malformed
   * digest throws at once.
   */
  fetchBlob(ref: string | Reference, blob: string | Pick<Descriptor, 'digest' | 'size'>, options: ReadOptions = {}): Readable {
    const b = typeof blob === 'string' ? this.blob(ref, blob) : this.blob(ref, blob.digest, blob.size);
    return blobStream(this.t, b, options, this.logger);
  }

  /** The whole blob in memory, verified (for configs and other small blobs). */
  async readBlob(ref: string | Reference, blob: string | Pick<Descriptor, 'digest' | 'size'>, options: ReadOptions = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.fetchBlob(ref, blob, options)) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  }

  /** Bytes `offset .. offset+length` of a blob by Range request (not digest-checked: a range cannot be). */
  async readAt(ref: string | Reference, blob: Pick<Descriptor, 'digest'> & { size?: number }, offset: number, length: number, options: ReadOptions = {}): Promise<Buffer> {
    return readRange(this.t, this.blob(ref, blob.digest, blob.size), offset, length, options);
  }

  /** Opens a blob for lazy reads (one HEAD when the size is not given). */
  async openBlob(ref: string | Reference, blob: string | (Pick<Descriptor, 'digest'> & Partial<Descriptor>)): Promise<RemoteBlob> {
    const given = typeof blob === 'string' ? { digest: blob } : blob;
    const b = this.blob(ref, given.digest, given.size);
    const size = given.size ?? (await headBlob(this.t, b)).size;
    const located = { ...b, size };
    const descriptor: Descriptor = { mediaType: given.mediaType ?? 'application/octet-stream', ...given, size };
    return {
      descriptor,
      size,
      readAt: (offset, length, options = {}) => readRange(this.t, located, offset, length, options),
      stream: (options = {}) => blobStream(this.t, located, options, this.logger),
    };
  }

  /**
   * Pushes a blob unless the repository has it (HEAD first): mounted from `mountFrom` when that
   * repository has it, else uploaded (monolithic, or PATCH chunks of `chunkSize`). A Buffer
   * source is checked before anything is sent; a stream source while it is sent. Outages restart
   * the upload from the start (the factory is called again). `ErrDigestMismatch` when the content
   * does not match `descriptor`.
   */
  async pushBlob(ref: string | Reference, descriptor: Pick<Descriptor, 'digest' | 'size'> & Partial<Descriptor>, source: BlobSource, options: PushBlobOptions = {}): Promise<PushedBlob> {
    const b = this.blob(ref, descriptor.digest, descriptor.size);
    if (!Number.isSafeInteger(descriptor.size) || descriptor.size < 0) {
      throw new ErrInvalidArgument(`blob ${b.registry}/${b.repository}@${b.digest}: bad size ${descriptor.size}`, { details: { digest: b.digest } });
    }
    return pushBlob(this.t, { ...b, size: descriptor.size, mediaType: descriptor.mediaType ?? 'application/octet-stream' }, source, options, this.logger);
  }

  /**
   * Pushes a manifest's exact bytes under the reference's tag (or, without a tag, its digest);
   * the blobs and child manifests it names must be pushed first. Returns its descriptor.
   */
  async pushManifest(ref: string | Reference, bytes: Uint8Array | string, mediaType: string): Promise<Descriptor> {
    const r = toReference(ref);
    const body = Buffer.from(bytes);
    const digest = digestOf(body, r.digest?.split(':')[0]);
    const what = formatReference(r);
    if (r.digest !== undefined && r.digest !== digest) {
      throw new ErrDigestMismatch(`manifest ${what}: the bytes hash to ${digest}; nothing was pushed`, { details: { reference: what, digest: r.digest } });
    }
    let declared: string | undefined;
    try {
      declared = (JSON.parse(body.toString('utf8')) as { mediaType?: string }).mediaType;
    } catch (err) {
      throw new ErrInvalidArgument(`manifest ${what}: not JSON; nothing was pushed`, { cause: err, details: { reference: what } });
    }
    if (declared !== undefined && declared !== mediaType) {
      throw new ErrInvalidArgument(`manifest ${what}: mediaType ${declared} in the body, ${mediaType} given; nothing was pushed`, { details: { reference: what } });
    }
    const res = await this.t.send({
      method: 'PUT',
      url: this.t.url(r.registry, `${r.repository}/manifests/${r.tag ?? digest}`),
      registry: r.registry,
      scopes: [repositoryScope(r.repository, true)],
      headers: { 'content-type': mediaType },
      body,
      idempotent: true,
      expect: [201],
      kind: 'manifest',
      what,
      digest,
    });
    await res.body.dump();
    const stored = responseHeader(res, 'docker-content-digest');
    if (stored !== undefined && stored !== digest) {
      throw new ErrDigestMismatch(`manifest ${what}: the registry stored ${stored}, the bytes hash to ${digest}`, { details: { reference: what, digest } });
    }
    return { mediaType, digest, size: body.length };
  }

  /** Closes the connection pool; the client is unusable afterwards. */
  close(): Promise<void> {
    return this.t.close();
  }

  private blob(ref: string | Reference, digest: string, size?: number): BlobLocation {
    const r = toReference(ref);
    assertDigest(digest, `${r.registry}/${r.repository}`);
    return { registry: r.registry, repository: r.repository, digest, ...(size !== undefined ? { size } : {}) };
  }
}
