/**
 * The channel to the daemon and the three call shapes (unary, server stream, bidi stream) with the
 * namespace and lease headers, deadlines, cancellation and error mapping applied to each call.
 */
import { Client as GrpcClient, Metadata, credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { ErrCanceled, ErrClosed } from '@buildcache/errdefs';
import { fromGrpc } from './errors.js';
import type { CallContext } from './errors.js';
import { method } from './proto.js';
import type { ServiceName } from './proto.js';
import type { CallOptions } from './types.js';

/** Largest message the daemon sends or accepts (containerd's default, 16 MiB). */
export const MAX_MESSAGE_SIZE = 16 << 20;

/** Channel options of a connection. */
export interface ConnectionOptions {
  /** Backoff before the first reconnect attempt after the daemon went away (default 100 ms). */
  readonly initialReconnectBackoffMs?: number;
  /** Upper bound of the reconnect backoff (default 1 s), i.e. how soon a restarted daemon is seen. */
  readonly maxReconnectBackoffMs?: number;
  /** HTTP/2 receive window in bytes (default 8 MiB). */
  readonly flowControlWindow?: number;
}

/** One grpc-js channel to a unix socket, shared by every view of a client. */
export class Connection {
  readonly target: string;
  private readonly grpc: GrpcClient;
  private closed = false;

  constructor(address: string, options: ConnectionOptions = {}) {
    const path = address.replace(/^unix:(\/\/)?/, '');
    this.target = `unix:${path}`;
    this.grpc = new GrpcClient(this.target, credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_SIZE,
      'grpc.max_send_message_length': MAX_MESSAGE_SIZE,
      'grpc.initial_reconnect_backoff_ms': options.initialReconnectBackoffMs ?? 100,
      'grpc.max_reconnect_backoff_ms': options.maxReconnectBackoffMs ?? 1000,
      'grpc.enable_retries': 0,
      // A larger HTTP/2 receive window than the 64 KiB default: content reads stream 1 MiB chunks.
      'grpc-node.flow_control_window': options.flowControlWindow ?? 8 << 20,
    });
  }

  /** The underlying grpc-js client; throws ErrClosed once closed. */
  client(ctx: CallContext): GrpcClient {
    if (this.closed) throw new ErrClosed('the containerd client is closed', { details: { method: ctx.method } });
    return this.grpc;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.grpc.close();
  }
}

/** Namespace, lease and default deadlines that a view of the client applies to its calls. */
export interface ScopeSettings {
  readonly namespace: string;
  readonly lease?: string;
  /** Default deadline of unary calls (ms). */
  readonly timeoutMs: number;
  /** Default deadline of streaming calls (ms): reads, writes, lists. */
  readonly streamTimeoutMs: number;
}

/** `/containerd.services.leases.v1.Leases/Create` → `Leases/Create` (the form in error details). */
function shortName(path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.', slash);
  return path.slice(dot + 1);
}

/** A cancellable call of any shape. */
interface Cancellable {
  cancel(): void;
}

/** Issues calls with one view's settings. */
export class Scope {
  constructor(
    readonly connection: Connection,
    readonly settings: ScopeSettings,
  ) {}

  /** The call's metadata: namespace always, lease when the call or the view has one. */
  metadata(options: CallOptions = {}): Metadata {
    const md = new Metadata({ waitForReady: false });
    md.set('containerd-namespace', this.settings.namespace);
    const lease = options.lease ?? this.settings.lease;
    if (lease) md.set('containerd-lease', lease);
    return md;
  }

  private deadline(options: CallOptions, stream: boolean): Date | undefined {
    const ms = options.timeoutMs ?? (stream ? this.settings.streamTimeoutMs : this.settings.timeoutMs);
    if (!ms || !Number.isFinite(ms)) return undefined;
    return new Date(Date.now() + ms);
  }

  private static canceled(ctx: CallContext): ErrCanceled {
    return new ErrCanceled(`${ctx.method}: canceled by the caller`, { details: { ...ctx } });
  }

  private static watch(signal: AbortSignal | undefined, call: Cancellable): () => void {
    if (!signal) return () => undefined;
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  }

  /** One request, one response. */
  unary<Res>(service: ServiceName, name: string, request: object, ctx: CallContext, options: CallOptions = {}): Promise<Res> {
    const m = method(service, name);
    const full: CallContext = { ...ctx, method: shortName(m.path) };
    if (options.signal?.aborted) return Promise.reject(Scope.canceled(full));
    let client: GrpcClient;
    try {
      client = this.connection.client(full);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<Res>((resolve, reject) => {
      const deadline = this.deadline(options, false);
      let unwatch = (): void => undefined;
      const call = client.makeUnaryRequest<object, object>(
        m.path, m.requestSerialize, m.responseDeserialize, request, this.metadata(options),
        deadline ? { deadline } : {},
        (err: ServiceError | null, value?: object) => {
          unwatch();
          if (err) reject(fromGrpc(err, full));
          else resolve(value as Res);
        },
      );
      unwatch = Scope.watch(options.signal, call);
    });
  }

  /** One request, a stream of responses; breaking out of the loop cancels the call. */
  async *serverStream<Res>(
    service: ServiceName, name: string, request: object, ctx: CallContext, options: CallOptions = {},
  ): AsyncGenerator<Res, void, undefined> {
    const m = method(service, name);
    const full: CallContext = { ...ctx, method: shortName(m.path) };
    if (options.signal?.aborted) throw Scope.canceled(full);
    const deadline = this.deadline(options, true);
    const call: ClientReadableStream<object> = this.connection.client(full).makeServerStreamRequest<object, object>(
      m.path, m.requestSerialize, m.responseDeserialize, request, this.metadata(options),
      deadline ? { deadline } : {},
    );
    const unwatch = Scope.watch(options.signal, call);
    let done = false;
    try {
      for await (const message of call) yield message as Res;
      done = true;
    } catch (err) {
      done = true;
      throw fromGrpc(err, full);
    } finally {
      unwatch();
      if (!done) call.cancel();
    }
  }

  /** Opens a bidi stream; the caller drives it and maps its errors with `fromGrpc`. */
  bidi<Req extends object, Res extends object>(
    service: ServiceName, name: string, ctx: CallContext, options: CallOptions = {},
  ): { call: ClientDuplexStream<Req, Res>; ctx: CallContext; unwatch: () => void } {
    const m = method(service, name);
    const full: CallContext = { ...ctx, method: shortName(m.path) };
    if (options.signal?.aborted) throw Scope.canceled(full);
    const deadline = this.deadline(options, true);
    const call = this.connection.client(full).makeBidiStreamRequest<Req, Res>(
      m.path,
      m.requestSerialize as (value: Req) => Buffer,
      m.responseDeserialize as (bytes: Buffer) => Res,
      this.metadata(options),
      deadline ? { deadline } : {},
    );
    return { call, ctx: full, unwatch: Scope.watch(options.signal, call) };
  }
}
