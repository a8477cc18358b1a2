/** `ContainerdBackend`: the snapshot `Backend` on a real containerd, through `@containerd/leases-ts`. */
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { cleanupTempMounts } from '../mount-cleanup.js';
import { ErrInvalidArgument, ErrNotImplemented, ErrUnavailable } from '@buildcache/errdefs';
import { assertSysLoaded } from '@buildcache/sys';
import { Client } from '@containerd/leases-ts';
import type { ClientOptions } from '@containerd/leases-ts';
import { LocalMounter } from '../mount.js';
import type { Backend, GCStats, LeaseManager, Mounter } from '../types.js';
import { ContainerdApplier, ContainerdContentStore, ContainerdDiffer, ContainerdSnapshotter } from './adapters.js';

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
  /** Extra client options (deadlines, reconnect backoff). */
  readonly clientOptions?: Omit<ClientOptions, 'address' | 'namespace'>;
  /** Accepted for symmetry with the embedded backend; the daemon logs its own work. */
  readonly logger?: Logger;
}

/** The snapshot `Backend` over a containerd daemon's snapshots, content, leases and diff services. */
export class ContainerdBackend implements Backend {
  readonly kind = 'containerd';
  readonly snapshotter: ContainerdSnapshotter;
  readonly content: ContainerdContentStore;
  readonly leases: LeaseManager;
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
    this.leases = client.leases;
    this.applier = new ContainerdApplier(client);
    this.differ = new ContainerdDiffer(client);
    this.mounter = new LocalMounter(mountRoot);
  }

  /**
   * Runs containerd's garbage collection synchronously (create + delete-with-sync of a throwaway
   * lease). containerd's GC is daemon-wide and does not report what it removed.
   */
  async garbageCollect(): Promise<GCStats> {
    const started = Date.now();
    const id = `buildcache-gc-${randomBytes(8).toString('hex')}`;
    await this.client.leases.create(id, {});
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
    const plugins = await client.introspection.plugins([`type==io.containerd.snapshotter.v1,id==${snapshotter}`]);
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
    if (err instanceof ErrUnavailable && options.address) {
      throw new ErrUnavailable(
        `containerd at ${options.address} is unreachable (${err.message.split('\n')[0]}); is the daemon running, and is that its socket?`,
        { cause: err, details: { path: options.address } },
      );
    }
    throw err;
  }
  return new ContainerdBackend(client, snapshotter, options.mountRoot, owns);
}
