/**
 * `Client`: one channel to a containerd socket and views of it that differ in namespace, lease or
 * default deadlines. Every call carries the view's namespace; calls of a `withLease` view (or with a
 * per-call `lease`) also carry `containerd-lease`.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { checkNamespace } from './errors.js';
import { Connection, Scope } from './transport.js';
import type { ConnectionOptions, ScopeSettings } from './transport.js';
import { LeasesService } from './leases.js';
import { SnapshotsService } from './snapshots.js';
import { ContentService } from './content.js';
import { DiffService } from './diff.js';
import { NamespacesService } from './namespaces.js';
import { IntrospectionService, VersionService } from './introspection.js';
import type { CallOptions, VersionInfo } from './types.js';

/** Default deadline of unary calls. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Default deadline of streaming calls (content reads and writes, lists). */
export const DEFAULT_STREAM_TIMEOUT_MS = 600_000;

/** Options of `Client.connect`. */
export interface ClientOptions extends ConnectionOptions {
  /** The daemon's unix socket: `/run/containerd/containerd.sock` or `unix:///…`. */
  readonly address: string;
  /** Namespace of every call (required: containerd refuses namespaced calls without one). */
  readonly namespace: string;
  /** Lease of every call of the root view (usually set per view with `withLease`). */
  readonly lease?: string;
  /** Default deadline of unary calls in ms (default 30 s; 0: none). */
  readonly timeoutMs?: number;
  /** Default deadline of streaming calls in ms (default 10 min; 0: none). */
  readonly streamTimeoutMs?: number;
}

/**
 * A typed containerd client. Views made with `withNamespace` / `withLease` / `withTimeout` share
 * the channel; `close()` on any of them closes it for all. The channel reconnects by itself after
 * a daemon restart; calls made while the daemon is down fail at once with `ErrUnavailable`.
 */
export class Client {
  /** Leases of this view's namespace. */
  readonly leases: LeasesService;
  /** Content store of this view's namespace. */
  readonly content: ContentService;
  /** Diff service (apply / diff). */
  readonly diff: DiffService;
  /** Namespaces of the daemon. */
  readonly namespaces: NamespacesService;
  /** Plugins and server info. */
  readonly introspection: IntrospectionService;
  private readonly versionService: VersionService;
  private readonly snapshotters = new Map<string, SnapshotsService>();

  private constructor(private readonly scope: Scope) {
    this.leases = new LeasesService(scope);
    this.content = new ContentService(scope);
    this.diff = new DiffService(scope);
    this.namespaces = new NamespacesService(scope);
    this.introspection = new IntrospectionService(scope);
    this.versionService = new VersionService(scope);
  }

  /** Creates a client (no I/O: the channel connects on the first call). */
  static connect(options: ClientOptions): Client {
    checkNamespace(options.namespace, 'Client.connect');
    if (!options.address) throw new ErrInvalidArgument('containerd address is required', { details: { method: 'Client.connect' } });
    const settings: ScopeSettings = {
      namespace: options.namespace,
      ...(options.lease ? { lease: options.lease } : {}),
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      streamTimeoutMs: options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS,
    };
    return new Client(new Scope(new Connection(options.address, options), settings));
  }

  /** This view's namespace. */
  get namespace(): string {
    return this.scope.settings.namespace;
  }

  /** This view's lease, if any. */
  get lease(): string | undefined {
    return this.scope.settings.lease;
  }

  private view(settings: Partial<ScopeSettings> & { lease?: string | undefined }): Client {
    const merged = { ...this.scope.settings, ...settings };
    if (!merged.lease) delete (merged as { lease?: string }).lease;
    return new Client(new Scope(this.scope.connection, merged));
  }

  /** A view whose calls run in namespace `namespace`. */
  withNamespace(namespace: string): Client {
    return this.view({ namespace: checkNamespace(namespace, 'Client.withNamespace') });
  }

  /** A view whose calls run under lease `id` (`containerd-lease`); `undefined` drops the lease. */
  withLease(id: string | undefined): Client {
    return this.view({ lease: id });
  }

  /** A view with other default deadlines (ms; 0: none). */
  withTimeout(timeoutMs: number, streamTimeoutMs = this.scope.settings.streamTimeoutMs): Client {
    return this.view({ timeoutMs, streamTimeoutMs });
  }

  /** The Snapshots service bound to snapshotter `name` (`overlayfs`, `native`, …). */
  snapshots(name = 'overlayfs'): SnapshotsService {
    let svc = this.snapshotters.get(name);
    if (!svc) {
      if (!name) throw new ErrInvalidArgument('snapshotter name is required', { details: { method: 'Client.snapshots' } });
      svc = new SnapshotsService(this.scope, name);
      this.snapshotters.set(name, svc);
    }
    return svc;
  }

  /** The daemon's version. */
  version(options?: CallOptions): Promise<VersionInfo> {
    return this.versionService.version(options);
  }

  /** True once `close()` was called on this client or any view of it. */
  get closed(): boolean {
    return this.scope.connection.isClosed;
  }

  /** Closes the channel shared by all views; later calls fail with `ErrClosed`. */
  close(): Promise<void> {
    this.scope.connection.close();
    return Promise.resolve();
  }
}
