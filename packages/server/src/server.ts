/**
 * The daemon: opens the cache once and serves BuildKit's Control service and buildcache's own Cache
 * service on a unix socket (0660, the daemon's user, an optional group). It notes its address in the
 * cache root, and shuts down gracefully: stop accepting, finish calls in flight (bounded), close the cache.
 */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  defaultGCPolicy, diskStatOf, openCache, removeDaemonMarker, writeDaemonMarker,
  type OpenCache, type OpenCacheOptions, type PrunePolicy,
} from '@buildcache/cache';
import { serveMetrics, type MetricsServer } from '@buildcache/metrics';
import { cacheService } from './cache-service.js';
import { Calls, Gate } from './calls.js';
import { controlService } from './control-service.js';
import { service } from './proto.js';
import { addressOf, clearSocketPath, DEFAULT_ADDRESS, groupId, secureSocket, socketPath } from './socket.js';
import type { ServiceContext, WorkerInfo } from './context.js';
import type { Workspace } from './workspace.js';

/** Bounds on what clients may run at once. */
export interface ServeLimits {
  /** Calls of any kind in flight (default 256). */
  readonly maxCalls?: number;
  /** Disk-usage calls in flight, BuildKit's and buildcache's together (default 16). */
  readonly maxDiskUsage?: number;
  /** BuildKit DiskUsage calls in flight (default 2): each builds its whole reply in memory. */
  readonly maxWholeDiskUsage?: number;
  /** Prune calls in flight or queued (default 4; they run one at a time). */
  readonly maxPrunes?: number;
}

/** Options of `Daemon.start`. */
export interface ServeOptions {
  /** The cache to open and serve. */
  readonly cache: OpenCacheOptions;
  /** `unix:///path.sock` (default `unix:///run/buildcache/buildcache.sock`). */
  readonly address?: string;
  /** Group (name or gid) that owns the socket, so its members may connect. */
  readonly group?: string;
  /** Run automatic GC with BuildKit's default policies (reported by ListWorkers). */
  readonly gc?: boolean;
  readonly limits?: ServeLimits;
  /** Serve Prometheus metrics at `http://HOST:PORT/metrics` (a loopback `HOST:PORT`; port 0 picks one). */
  readonly metrics?: string;
  /** How long a shutdown waits for calls in flight before cancelling them (default 10 s). */
  readonly shutdownTimeoutMs?: number;
  readonly logger: Logger;
}

async function version(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** A running daemon. */
export class Daemon {
  #closing: Promise<void> | undefined;

  private constructor(
    /** The address clients connect to (`unix:///…`). */
    readonly address: string,
    private readonly path: string,
    private readonly server: Server,
    private readonly calls: Calls,
    private readonly opened: OpenCache,
    private readonly workspace: Workspace,
    private readonly options: ServeOptions,
    /** The `/metrics` listener, when asked for. */
    readonly metrics: MetricsServer | undefined,
  ) {}

  /** Opens the cache and starts serving it; fails without side effects when the socket is held by a live server. */
  static async start(options: ServeOptions): Promise<Daemon> {
    const { logger } = options;
    const path = socketPath(options.address ?? DEFAULT_ADDRESS);
    const address = addressOf(path);
    const gid = options.group !== undefined ? await groupId(options.group) : undefined;
    await clearSocketPath(path);
    const root = options.cache.root;
    const gcPolicies: PrunePolicy[] = options.gc ? defaultGCPolicy(await diskStatOf(root).catch(() => diskStatOf('/'))) : [];
    const metrics = options.metrics !== undefined ? await serveMetrics(options.metrics) : undefined;
    const opened = await openCache({ ...options.cache, logger, ...(options.gc ? { gc: { policies: gcPolicies } } : {}) }).catch(async (err: unknown) => {
      await metrics?.close();
      throw err;
    });
    // Loaded here: a client (`connect`) needs none of the image store, frontend or registry modules.
    const { Workspace } = await import('./workspace.js');
    const workspace = new Workspace(opened, root, logger);
    try {
      await workspace.clearScratch();
      const limits = options.limits ?? {};
      const calls = new Calls(logger, new Gate(limits.maxCalls ?? 256, 'calls'));
      const backend = opened.backend;
      const worker: WorkerInfo = {
        id: `buildcache-${createHash('sha256').update(`${hostname()}\0${root}\0${backend.kind}`).digest('hex').slice(0, 16)}`,
        labels: {
          'org.mobyproject.buildkit.worker.executor': 'none',
          'org.mobyproject.buildkit.worker.hostname': hostname(),
          'org.mobyproject.buildkit.worker.snapshotter': backend.snapshotter.name,
          'dev.buildcache.backend': backend.kind,
          'dev.buildcache.root': root,
        },
        gcPolicies,
        version: await version(),
      };
      const ctx: ServiceContext = {
        cache: opened.cache,
        calls,
        duGate: new Gate(limits.maxDiskUsage ?? 16, 'disk-usage calls'),
        wholeReplyGate: new Gate(limits.maxWholeDiskUsage ?? 2, "BuildKit DiskUsage calls (each reply is one message built in memory)"),
        pruneGate: new Gate(limits.maxPrunes ?? 4, 'prune calls'),
        worker,
        workspace,
      };
      const server = new Server({ 'grpc.max_receive_message_length': 4 << 20 });
      server.addService(service('control'), controlService(ctx));
      server.addService(service('cache'), cacheService(ctx));
      // The socket is created 0600 (umask) and opened up to 0660 only once its group is set.
      const umask = process.umask(0o177);
      try {
        await new Promise<number>((res, rej) => server.bindAsync(address, ServerCredentials.createInsecure(), (e, port) => (e ? rej(e) : res(port))));
      } finally {
        process.umask(umask);
      }
      await secureSocket(path, gid);
      await writeDaemonMarker(root, address);
      logger.info({ address, root, backend: backend.kind, group: options.group, metrics: metrics?.address }, 'serving the cache');
      return new Daemon(address, path, server, calls, opened, workspace, options, metrics);
    } catch (err) {
      await metrics?.close();
      await workspace.close();
      await opened.close();
      await rm(path, { force: true });
      throw err;
    }
  }

  /**
   * Graceful shutdown: stops accepting calls, ends Hold calls, waits up to the shutdown timeout for
   * the others, cancels what is left, then closes the cache and removes the socket and the note.
   */
  close(): Promise<void> {
    this.#closing ??= this.shutdown();
    return this.#closing;
  }

  private async shutdown(): Promise<void> {
    const { logger } = this.options;
    const timeoutMs = this.options.shutdownTimeoutMs ?? 10_000;
    logger.info({ timeoutMs }, 'shutting down: finishing calls in flight');
    const stopped = new Promise<void>((res) => this.server.tryShutdown(() => res()));
    const finished = await this.calls.drain(timeoutMs);
    if (!finished) {
      logger.warn({ timeoutMs }, 'calls still running after the shutdown timeout; cancelling them');
      this.server.forceShutdown();
    }
    await this.calls.settled();
    await Promise.race([stopped, new Promise((res) => setTimeout(res, 1000))]);
    this.server.forceShutdown();
    try {
      await removeDaemonMarker(this.options.cache.root);
      await rm(this.path, { force: true });
    } finally {
      await this.metrics?.close();
      await this.workspace.close();
      await this.opened.close();
    }
    logger.info('cache closed; daemon stopped');
  }
}
