/** `ContainerdBackend`: the snapshot `Backend` on a real containerd, through `@containerd/leases-ts`. */
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { cleanupTempMounts } from '../mount-cleanup.js';
import { ErrDeadlineExceeded, ErrInvalidArgument, ErrNotImplemented, ErrPermissionDenied, ErrUnavailable } from '@buildcache/errdefs';
import { assertSysLoaded } from '@buildcache/sys';
import type { Client, ClientOptions } from '@containerd/leases-ts';
import { LocalMounter } from '../mount.js';
import type { Backend, GarbageCollectOptions, GCStats, Mounter } from '../types.js';
import { LABEL_GC_EXPIRE } from '../labels.js';
import { ContainerdApplier, ContainerdContentStore, ContainerdDiffer, ContainerdLeases, ContainerdSnapshotter } from './adapters.js';

/** Default of `connectTimeoutMs`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** The first call's failure, said in terms of the socket: missing, forbidden, silent, or not containerd. */
function connectError(err: unknown, address: string, timeoutMs: number, grpcCodeOf: (err: unknown) => unknown): unknown {
  if (!(err instanceof Error)) return err;
  const options = { cause: err, details: { path: address } };
  // grpc-js says "No connection established. Last error: <cause> (<time>). Resolution note: …".
  const reason = /Last error: (?:Error: )?(.*?)(?: \([\dT:.Z-]+\))?\. Resolution note/.exec(err.message)?.[1] ?? err.message.split('\n')[0]!;
  if (err instanceof ErrPermissionDenied || (err instanceof ErrUnavailable && /EACCES|EPERM/.test(reason))) {
    return new ErrPermissionDenied(
      `containerd socket ${address}: permission denied; run as a user who may open it (usually root) or use the embedded backend`,
      options,
    );
  }
  if (err instanceof ErrUnavailable && /Protocol error/.test(reason)) {
    return new ErrUnavailable(`${address} is not containerd: it does not speak gRPC; pass containerd's socket`, options);
  }
  if (err instanceof ErrUnavailable) {
    return new ErrUnavailable(`containerd at ${address} is unreachable (${reason}); is the daemon running, and is that its socket?`, options);
  }
  if (err instanceof ErrDeadlineExceeded) {
    return new ErrUnavailable(
      `${address} did not answer as containerd within ${timeoutMs / 1000}s; is that containerd's socket (or raise the timeout)?`,
      options,
    );
  }
  if (err instanceof ErrNotImplemented && grpcCodeOf(err) !== undefined) {
    return new ErrUnavailable(`${address} answered, but not as containerd (${reason}); pass containerd's socket`, options);
  }
  return err;
}

/** Snapshotters the containerd backend supports. */
export type ContainerdSnapshotterName = 'overlayfs' | 'native';

/** Options of `openContainerdBackend`. */
export interface ContainerdBackendOptions {
  /** The daemon's socket (ignored when `client` is given). */
  readonly address?: string;
  /** Namespace of every call (ignored when `client` is given). */
  readonly namespace?: string;
  /** A client to use (not closed by the backend); otherwise one is made and owned. */
  readonly client?: Client;
  /** Snapshotter (default overlayfs). */
  readonly snapshotter?: ContainerdSnapshotterName;
  /**
   * Where temp mount points are made (default: the OS temp dir). A dir of the caller's own is
   * cleaned at open of the mounts a killed process left there.
   */
  readonly mountRoot?: string;
  /** How long the first call may wait for the daemon to answer, in ms (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** Extra client options (deadlines, reconnect backoff). */
  readonly clientOptions?: Omit<ClientOptions, 'address' | 'namespace'>;
  /** Accepted for symmetry with the embedded backend; the daemon logs its own work. */
  readonly logger?: Logger;
}

/** How long a GC lease left by a killed process keeps counting as a root. */
const GC_LEASE_TTL_MS = 60 * 60 * 1000;

/** The snapshot `Backend` over a containerd daemon's snapshots, content, leases and diff services. */
export class ContainerdBackend implements Backend {
  readonly kind = 'containerd';
  readonly snapshotter: ContainerdSnapshotter;
  readonly content: ContainerdContentStore;
  readonly leases: ContainerdLeases;
  readonly applier: ContainerdApplier;
  readonly differ: ContainerdDiffer;
  readonly mounter: Mounter;

  constructor(
    /** The client every call goes through. */
    readonly client: Client,
    snapshotter: ContainerdSnapshotterName = 'overlayfs',
    mountRoot?: string,
    private readonly ownsClient = false,
  ) {
    this.snapshotter = new ContainerdSnapshotter(client.snapshots(snapshotter));
    this.content = new ContainerdContentStore(client);
    this.leases = new ContainerdLeases(client.leases);
    this.applier = new ContainerdApplier(client);
    this.differ = new ContainerdDiffer(client);
    this.mounter = new LocalMounter(mountRoot);
  }

  /**
   * Runs containerd's garbage collection synchronously (create + delete-with-sync of a throwaway
   * lease, labelled with `leaseLabels` and expiring within the hour in case the process dies
   * holding it). containerd's GC is daemon-wide and does not report what it removed.
   */
  async garbageCollect(options: GarbageCollectOptions = {}): Promise<GCStats> {
    const started = Date.now();
    const id = `buildcache-gc-${randomBytes(8).toString('hex')}`;
    const expire = new Date(started + GC_LEASE_TTL_MS).toISOString();
    await this.client.leases.create(id, { ...options.leaseLabels, [LABEL_GC_EXPIRE]: expire });
    await this.client.leases.delete(id, { sync: true });
    return { durationMs: Date.now() - started };
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

/**
 * Opens the containerd backend and checks that the daemon answers and the snapshotter is loaded
 * (and that the `@buildcache/sys` addon, which makes its local mounts, loads).
 */
export async function openContainerdBackend(options: ContainerdBackendOptions): Promise<ContainerdBackend> {
  assertSysLoaded();
  // Loaded here, not at import: the gRPC client and its protos cost ~15 MiB that users of the embedded backend never need.
  const { Client, grpcCodeOf } = await import('@containerd/leases-ts');
  const snapshotter = options.snapshotter ?? 'overlayfs';
  let client = options.client;
  const owns = !client;
  if (!client) {
    if (!options.address || !options.namespace) {
      throw new ErrInvalidArgument('openContainerdBackend needs a client, or an address and a namespace');
    }
    client = Client.connect({ ...(options.clientOptions ?? {}), address: options.address, namespace: options.namespace });
  }
  try {
    const plugins = await client.introspection.plugins([`type==io.containerd.snapshotter.v1,id==${snapshotter}`], {
      timeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    });
    const plugin = plugins[0];
    if (!plugin || plugin.initError) {
      throw new ErrNotImplemented(
        `containerd snapshotter ${snapshotter} is not available${plugin?.initError ? `: ${plugin.initError.message}` : ''}`,
        { details: { id: snapshotter } },
      );
    }
    if (options.mountRoot) await cleanupTempMounts(options.mountRoot, options.logger ?? pino({ level: 'silent' }));
  } catch (err) {
    if (owns) await client.close();
    throw options.address ? connectError(err, options.address, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, grpcCodeOf) : err;
  }
  return new ContainerdBackend(client, snapshotter, options.mountRoot, owns);
}
