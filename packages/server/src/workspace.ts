/**
 * The CLI's operations on a cache opened in this process (`Workspace`), behind the same interface as
 * the daemon's client (`Operations`): the daemon serves a Workspace, the CLI runs one without
 * `--addr`. The image store, the frontend and the registry client open on first use. Exported as
 * `@buildcache/server/local` (no gRPC loaded).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BuildResult, Frontend } from '@buildcache/frontend';
import type { CacheSpec, CacheStore } from '@buildcache/remotecache';
import { storeOf } from '@buildcache/remotecache/registry';
import type { RemoteBuildRequest } from './build-client.js';
import { demo, type DemoReport } from './demo.js';
import type { ExportFormat, ImageInfo } from '@buildcache/images';
import { parseBlobFormat, type OpenCache } from '@buildcache/cache';
import { cat, openImages, openRemote, pull, push, type OpenImages, type PullReport, type PushReport, type Remote } from './operations.js';

export type { DemoReport, DemoLayer } from './demo.js';
export type { PullReport, PushReport, PulledLayer } from './operations.js';

/** What the CLI's image and registry commands need: a Workspace here, or a daemon's client. */
export interface Operations {
  /** Records image `ref`'s layers (fetched, stored and extracted unless `lazy`). */
  pull(ref: string, options?: { readonly lazy?: boolean; readonly signal?: AbortSignal }): Promise<PullReport>;
  /** Pushes image or record `name` to `ref` (`compression`: gzip, zstd, uncompressed, estargz). */
  push(name: string, ref: string, compression?: string): Promise<PushReport>;
  /** File `path` of remote image `ref`. */
  cat(ref: string, path: string): AsyncIterable<Buffer>;
  /** Imports an image archive; returns the images loaded. */
  importArchive(source: AsyncIterable<Uint8Array>, what: string): Promise<ImageInfo[]>;
  /** Image `name` as an archive. */
  exportArchive(name: string, format: ExportFormat): AsyncIterable<Buffer>;
  /** The images of the image store. */
  images(): Promise<ImageInfo[]>;
  /** `buildcache demo`: builds a two-layer chain of records and exports it. */
  demo(): Promise<DemoReport>;
}

/** The operations on an opened cache, and the daemon's private scratch space. */
export class Workspace implements Operations {
  #images: Promise<OpenImages> | undefined;
  #frontend: Promise<Frontend> | undefined;
  #remote: Remote | undefined;
  private readonly tmp: string;

  constructor(
    private readonly opened: OpenCache,
    /** The cache root: the image store, frontend and lazy copies live under it. */
    private readonly root: string,
    /** The daemon's logger (its handlers log through it too). */
    readonly logger: Logger,
  ) {
    this.tmp = join(root, 'server', 'tmp');
  }

  /** The image store (`<root>/layers/images`). */
  private imageStore(): Promise<OpenImages> {
    this.#images ??= openImages(this.opened.cache, this.root, this.logger).catch((err: unknown) => {
      this.#images = undefined;
      throw err;
    });
    return this.#images;
  }

  private remote(): Remote {
    this.#remote ??= openRemote(this.root, this.logger);
    return this.#remote;
  }

  /** The build frontend (`<root>/frontend`; runtime `$BUILDCACHE_RUNC` or runc), over the image store and the registries. */
  private frontend(): Promise<Frontend> {
    this.#frontend ??= (async () => {
      const { images } = await this.imageStore();
      const runtime = process.env['BUILDCACHE_RUNC'] || undefined;
      // loaded here: images, pull, push and cat need none of the frontend
      const { Frontend } = await import('@buildcache/frontend');
      return Frontend.open({
        cache: this.opened.cache, content: this.opened.backend.content, root: join(this.root, 'frontend'), logger: this.logger, images,
        // FROM an image the image store lacks pulls it from its registry, lazily
        registry: { client: this.remote().client, layers: this.remote().manager },
        ...(runtime ? { runtime } : {}),
      });
    })().catch((err: unknown) => {
      this.#frontend = undefined;
      throw err;
    });
    return this.#frontend;
  }

  /**
   * Builds a Dockerfile over the cache, with the remote caches its specs name: a registry through this
   * workspace's registry client, a local layout at `local(spec, index, direction)` (default: the directory itself).
   */
  async build(req: RemoteBuildRequest, local?: (spec: CacheSpec, index: number, direction: 'from' | 'to') => CacheStore): Promise<BuildResult> {
    const { cacheFrom = [], cacheTo = [], ...rest } = req;
    const store = (direction: 'from' | 'to') => (spec: CacheSpec, i: number): CacheStore =>
      spec.type === 'local' && local ? local(spec, i, direction) : storeOf(spec, spec.type === 'registry' ? this.remote().client : undefined);
    return (await this.frontend()).build({
      ...rest,
      ...(cacheFrom.length ? { cacheFrom: cacheFrom.map(store('from')) } : {}),
      ...(cacheTo.length
        ? { cacheTo: cacheTo.map((c, i) => ({ store: store('to')(c, i), mode: c.mode, ignoreError: c.ignoreError, ...(c.compression ? { compression: c.compression } : {}) })) }
        : {}),
    });
  }

  pull(ref: string, options: { readonly lazy?: boolean; readonly signal?: AbortSignal } = {}): Promise<PullReport> {
    return pull(this.opened.cache, this.remote(), ref, Boolean(options.lazy), options.signal);
  }

  async push(name: string, ref: string, compression?: string): Promise<PushReport> {
    const format = parseBlobFormat(compression, '--compression');
    const { images } = await this.imageStore();
    return push(this.opened.cache, images, this.opened.backend.content, this.remote(), name, ref, format);
  }

  cat(ref: string, path: string): AsyncIterable<Buffer> {
    return cat(this.remote(), ref, path);
  }

  async importArchive(source: AsyncIterable<Uint8Array>, what: string): Promise<ImageInfo[]> {
    return (await this.imageStore()).images.import(source, { what });
  }

  async *exportArchive(name: string, format: ExportFormat): AsyncGenerator<Buffer> {
    yield* (await this.imageStore()).images.export(name, format);
  }

  async images(): Promise<ImageInfo[]> {
    return (await this.imageStore()).images.list();
  }

  demo(): Promise<DemoReport> {
    return demo(this.opened.cache);
  }

  /** Empties the scratch space (what a killed daemon left). */
  async clearScratch(): Promise<void> {
    await rm(this.tmp, { recursive: true, force: true });
  }

  /** Runs `fn` in a fresh private directory (0700) under `<root>/server/tmp`, removed afterwards whatever happens. */
  async scratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
    await mkdir(this.tmp, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(this.tmp, 'call-'));
    try {
      return await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Closes what was opened (not the cache). */
  async close(): Promise<void> {
    const images = this.#images;
    this.#images = undefined;
    this.#frontend = undefined;
    try {
      await this.#remote?.close();
    } finally {
      await (await images?.catch(() => undefined))?.close();
    }
  }
}
