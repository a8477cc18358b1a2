/**
 * The client of a buildcache daemon: `connect(address)` gives the in-process cache's du and prune
 * (async iterable of UsageInfo; prune policies, onDeleted, dry run, signal) plus Hold, over the
 * daemon's socket. Every failure is an `@buildcache/errdefs` class, never a raw gRPC error.
 */
import { Client as GrpcClient, credentials, Metadata, status as Status } from '@grpc/grpc-js';
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { DiskUsageOptions, PruneOptions, PrunePolicy, PruneResult, UsageInfo } from '@buildcache/cache';
import { ErrClosed, ErrPermissionDenied, ErrUnavailable, type BuildcacheError } from '@buildcache/errdefs';
import { fromGrpc, MAX_MESSAGE_SIZE } from '@containerd/leases-ts';
import { fromWireUsage, toWirePolicy, type WireUsage } from './convert.js';
import { method } from './proto.js';
import { addressOf, socketPath } from './socket.js';
import type { OPERATIONS } from './cache-service.js';

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

/** One of the operations reserved on the socket (answered with ErrNotImplemented: the CLI runs them in its own process). */
export type Operation = (typeof OPERATIONS)[number];

/** A connection to a daemon. */
export class CacheClient {
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

  private stream<Res>(rpc: string, request: object, signal?: AbortSignal): ClientReadableStream<Res> {
    if (this.closed) throw new ErrClosed(`the client of ${this.address} is closed`);
    const m = method('cache', rpc);
    const call = this.grpc.makeServerStreamRequest<object, Res>(
      m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => Res, request, new Metadata({ waitForReady: false }),
    );
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    return call;
  }

  /** Reads a stream to its end, mapping its failure; yields each message. */
  private async *read<Res>(rpc: string, request: object, signal?: AbortSignal): AsyncGenerator<Res> {
    signal?.throwIfAborted();
    const call = this.stream<Res>(rpc, request, signal);
    let done = false;
    try {
      for await (const m of call) yield m as Res;
      done = true;
    } catch (err) {
      done = true;
      if (signal?.aborted) throw signal.reason;
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

  /** Calls one of the reserved operations (build, pull, push, import, export, images): ErrNotImplemented. */
  async operation(op: Operation, request: unknown): Promise<unknown[]> {
    const out: unknown[] = [];
    for await (const e of this.read<{ json: string }>(op, { json: JSON.stringify(request ?? null) })) out.push(JSON.parse(e.json));
    return out;
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
