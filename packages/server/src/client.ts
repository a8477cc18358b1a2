/**
 * The client of a buildcache daemon: `connect(address)` gives the in-process cache's du and prune
 * (async iterable of UsageInfo; prune policies, onDeleted, dry run, signal), the frontend's build
 * (the context streamed from this process), the CLI's operations (`Operations`) and Hold, over the
 * daemon's socket. Every failure is an `@buildcache/errdefs` class, never a raw gRPC error.
 */
import { Client as GrpcClient, credentials, Metadata, status as Status } from '@grpc/grpc-js';
import type { ClientDuplexStream, ClientReadableStream } from '@grpc/grpc-js';
import type { DiskUsageOptions, PruneOptions, PrunePolicy, PruneResult, UsageInfo } from '@buildcache/cache';
import * as errdefs from '@buildcache/errdefs';
import { ErrClosed, ErrPermissionDenied, ErrUnavailable, BuildcacheError } from '@buildcache/errdefs';
import type { ExportFormat, ImageInfo } from '@buildcache/images';
import { fromGrpc, MAX_MESSAGE_SIZE } from '@containerd/leases-ts';
import { fromWireUsage, toWirePolicy, type WireUsage } from './convert.js';
import { method } from './proto.js';
import { addressOf, socketPath } from './socket.js';
import { messages } from './chunks.js';
import { remoteBuild, type RemoteBuildRequest, type RemoteBuildResult } from './build-client.js';
import type { DemoReport, Operations, PullReport, PushReport } from './workspace.js';

type ErrorClass = new (message: string, options?: ConstructorParameters<typeof BuildcacheError>[1]) => BuildcacheError;

/** Every errdefs class by its code, to give back the class the daemon threw (its `buildcache-code` trailer). */
const CLASSES = new Map<string, ErrorClass>(
  (Object.values(errdefs) as unknown[])
    .filter((c): c is ErrorClass => typeof c === 'function' && (c as { prototype: unknown }).prototype instanceof BuildcacheError)
    .map((c) => [new c('').code, c] as const),
);

/** An image as the wire carries it. */
interface WireImage {
  id: string;
  names: string[];
  layers: string;
  size: string;
  created: string;
}

const fromWireImage = (w: WireImage): ImageInfo => ({
  id: w.id, names: w.names, layers: Number(w.layers), size: Number(w.size), ...(w.created ? { created: w.created } : {}),
});

/** Records held through the daemon until `release()`. */
export interface Hold {
  /** The records held (a new mutable record's ID last). */
  readonly ids: readonly string[];
  release(): Promise<void>;
}

/** Options of `hold()`. */
export interface HoldOptions {
  /** Existing records to hold. */
  readonly ids?: readonly string[];
  /** Also create and hold a new mutable record with this description. */
  readonly newMutable?: { readonly description?: string };
}

/** A connection to a daemon. */
export class CacheClient implements Operations {
  private readonly grpc: GrpcClient;
  private closed = false;

  constructor(readonly address: string) {
    this.grpc = new GrpcClient(address.replace(/^unix:\/\//, 'unix:'), credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_SIZE,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.enable_retries': 0,
    });
  }

  /** Maps a call's failure to a typed error that names the daemon. */
  private error(err: unknown, rpc: string): BuildcacheError {
    const e = fromGrpc(err, { method: `Cache/${rpc}` });
    const code = (err as { metadata?: Metadata }).metadata?.get('buildcache-code')[0];
    // The daemon answered with a typed error (its code trailer): the error is its, not the connection's.
    if (typeof code === 'string') {
      const cls = code !== e.code ? CLASSES.get(code) : undefined;
      return cls ? new cls(e.message, { cause: e, details: e.details }) : e;
    }
    if (e.details['grpcCode'] !== Status.UNAVAILABLE || !(e instanceof ErrUnavailable)) return e;
    if (/EACCES|EPERM/.test(e.message)) {
      return new ErrPermissionDenied(
        `permission denied on the daemon's socket ${socketPath(this.address)}: ask for membership of its group (buildcache serve --group)`,
        { cause: e, details: { path: this.address } },
      );
    }
    if (/ENOENT|ECONNREFUSED|No connection established|Failed to connect/.test(e.message)) {
      return new ErrUnavailable(`no buildcache daemon answers at ${this.address}: start one with buildcache serve, or check --addr / BUILDCACHE_HOST`, {
        cause: e,
        details: { path: this.address },
      });
    }
    return e;
  }

  /**
   * Reads a call's replies to their end, mapping its failure; yields each message. With `input`
   * (a bidirectional call) its messages are written meanwhile, waiting while the daemon is not reading;
   * a failure of `input` cancels the call and is thrown.
   */
  private async *read<Res>(rpc: string, request: object | AsyncIterable<object>, signal?: AbortSignal): AsyncGenerator<Res> {
    signal?.throwIfAborted();
    if (this.closed) throw new ErrClosed(`the client of ${this.address} is closed`);
    const def = method('cache', rpc);
    const deserialize = def.responseDeserialize as (b: Buffer) => Res;
    const metadata = new Metadata({ waitForReady: false });
    let inputFailure: { err: unknown } | undefined;
    let call: ClientReadableStream<Res> | ClientDuplexStream<object, Res>;
    if (Symbol.asyncIterator in request) {
      const duplex = this.grpc.makeBidiStreamRequest<object, Res>(def.path, def.requestSerialize, deserialize, metadata);
      void write(duplex, request).catch((err: unknown) => {
        inputFailure = { err };
        duplex.cancel();
      });
      call = duplex;
    } else {
      call = this.grpc.makeServerStreamRequest<object, Res>(def.path, def.requestSerialize, deserialize, request, metadata);
    }
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    let done = false;
    try {
      for await (const m of call) yield m as Res;
      done = true;
    } catch (err) {
      done = true;
      if (signal?.aborted) throw signal.reason;
      if (inputFailure) throw inputFailure.err;
      throw this.error(err, rpc);
    } finally {
      if (!done) call.cancel();
    }
  }

  /** Usage of every record of the daemon's cache, streamed as the daemon computes it. */
  async *diskUsage(options: DiskUsageOptions & { readonly signal?: AbortSignal } = {}): AsyncGenerator<UsageInfo> {
    const request = { filters: [...(options.filters ?? [])], ageLimitMs: String(Math.trunc(options.ageLimitMs ?? 0)) };
    for await (const w of this.read<WireUsage>('DiskUsage', request, options.signal)) yield fromWireUsage(w);
  }

  /** Prunes the daemon's cache by `policies`; `onDeleted` sees each record as the daemon deletes it. */
  async prune(policies: readonly PrunePolicy[] = [{}], options: PruneOptions = {}): Promise<PruneResult> {
    const request = { policies: policies.map(toWirePolicy), dryRun: Boolean(options.dryRun) };
    let result: PruneResult = { deleted: 0, reclaimed: 0 };
    type Event = { deleted?: WireUsage; done?: { deleted: string; reclaimed: string } };
    for await (const e of this.read<Event>('Prune', request, options.signal)) {
      if (e.deleted) await options.onDeleted?.(fromWireUsage(e.deleted));
      if (e.done) result = { deleted: Number(e.done.deleted), reclaimed: Number(e.done.reclaimed) };
    }
    return result;
  }

  /** Holds records (in use for du, untouchable for prune) until `release()`. */
  async hold(options: HoldOptions): Promise<Hold> {
    const request = { ids: [...(options.ids ?? [])], newMutable: Boolean(options.newMutable), description: options.newMutable?.description ?? '' };
    const it = this.read<{ ids: string[] }>('Hold', request);
    const first = await it.next();
    if (first.done) throw new ErrUnavailable(`Hold: the daemon at ${this.address} ended the call before answering`);
    return { ids: first.value.ids, release: async () => void (await it.return(undefined)) };
  }

  /** Builds a Dockerfile on the daemon: the context (and Dockerfile) are read here and streamed to it. */
  build(req: RemoteBuildRequest): Promise<RemoteBuildResult> {
    return remoteBuild((input, signal) => this.read('Build', input, signal), req);
  }

  async pull(ref: string, options: { readonly lazy?: boolean; readonly signal?: AbortSignal } = {}): Promise<PullReport> {
    const layers: PullReport['layers'][number][] = [];
    let top = '';
    type Event = { layer?: { id: string; digest: string; format: 'estargz' | 'gzip'; fetched: string; size: string; extracted: boolean }; done?: string };
    for await (const e of this.read<Event>('Pull', { ref, lazy: Boolean(options.lazy) }, options.signal)) {
      if (e.layer) layers.push({ ...e.layer, fetched: Number(e.layer.fetched), size: Number(e.layer.size) });
      if (e.done) top = e.done;
    }
    return { layers, top };
  }

  async push(name: string, ref: string, compression?: string): Promise<PushReport> {
    const layers: PushReport['layers'][number][] = [];
    let digest = '';
    for await (const e of this.read<{ layer?: { digest: string; size: string }; done?: string }>('Push', { name, ref, compression: compression ?? '' })) {
      if (e.layer) layers.push({ digest: e.layer.digest, size: Number(e.layer.size) });
      if (e.done) digest = e.done;
    }
    return { layers, digest };
  }

  async *cat(ref: string, path: string): AsyncGenerator<Buffer> {
    for await (const c of this.read<{ data: Buffer }>('Cat', { ref, path })) yield c.data;
  }

  /** Imports an archive read here and streamed to the daemon. */
  async importArchive(source: AsyncIterable<Uint8Array>, what: string): Promise<ImageInfo[]> {
    const out: ImageInfo[] = [];
    for await (const r of this.read<{ images: WireImage[] }>('Import', messages({ what }, 'data', source))) out.push(...r.images.map(fromWireImage));
    return out;
  }

  /** Image `name` as an archive, streamed from the daemon. */
  async *exportArchive(name: string, format: ExportFormat): AsyncGenerator<Buffer> {
    for await (const c of this.read<{ data: Buffer }>('Export', { name, format })) yield c.data;
  }

  async images(): Promise<ImageInfo[]> {
    const out: ImageInfo[] = [];
    for await (const w of this.read<WireImage>('Images', {})) out.push(fromWireImage(w));
    return out;
  }

  /** Runs the demo on the daemon's cache. */
  async demo(): Promise<DemoReport> {
    type Wire = { base: string; app: string; layers: { digest: string; size: string; diffID: string; chainID: string }[] };
    for await (const r of this.read<Wire>('Demo', {})) return { base: r.base, app: r.app, layers: r.layers.map((l) => ({ ...l, size: Number(l.size) })) };
    throw new ErrUnavailable(`Demo: the daemon at ${this.address} ended the call without a result`);
  }

  /** Closes the connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.grpc.close();
  }
}

/** Connects to the daemon at `address` (`unix:///path.sock`); the connection opens on the first call. */
export function connect(address: string): CacheClient {
  return new CacheClient(addressOf(socketPath(address)));
}

/** Writes `input` to a bidirectional call with back-pressure, then half-closes it. */
async function write(call: ClientDuplexStream<object, unknown>, input: AsyncIterable<object>): Promise<void> {
  for await (const m of input) {
    if (call.destroyed || call.writableEnded) return;
    if (!call.write(m)) {
      await new Promise<void>((resolve) => {
        const go = (): void => {
          call.off('drain', go);
          call.off('close', go);
          resolve();
        };
        call.on('drain', go);
        call.on('close', go);
      });
    }
  }
  if (!call.destroyed) call.end();
}
