/**
 * `openCache`: the one on-disk layout of a cache, shared by the `buildcache` command and programs,
 * so that both open the same records and backend from the same root.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ErrInvalidArgument, ErrStoreLocked } from '@buildcache/errdefs';
import { openContainerdBackend, openEmbeddedBackend, type Backend } from '@buildcache/snapshot';
import { CacheManager } from './manager.js';
import type { GCOptions } from './gc.js';
import { runningDaemon } from './daemon-marker.js';

/** Where a cache lives and which backend holds its data. */
export interface OpenCacheOptions {
  /**
   * The cache's directory. Embedded backend: records in `<root>/metadata`, the backend in
   * `<root>/backend`. containerd: records in `<root>/containerd-<namespace>/metadata`.
   */
  readonly root: string;
  /** containerd's socket; without it the embedded backend is used. */
  readonly containerd?: string;
  /** containerd namespace (default `buildcache`); only with `containerd`. */
  readonly namespace?: string;
  /** `overlayfs` or `native` (default: overlayfs with containerd; the embedded backend chooses). */
  readonly snapshotter?: string;
  /** How long the containerd daemon may take to answer the first call, in ms (default 10 s). */
  readonly connectTimeoutMs?: number;
  readonly logger?: Logger;
  /** Automatic garbage collection (see `CacheManagerOptions.gc`). */
  readonly gc?: GCOptions;
}

/** An open cache and its backend; `close()` closes both. */
export interface OpenCache {
  readonly cache: CacheManager;
  readonly backend: Backend;
  close(): Promise<void>;
}

/** The default containerd namespace of a cache. */
export const DEFAULT_NAMESPACE = 'buildcache';

/** A lock error names the daemon that holds the cache, when one does (see daemon-marker.ts). */
async function lockedByDaemon(root: string, err: unknown): Promise<unknown> {
  if (!(err instanceof ErrStoreLocked)) return err;
  const address = await runningDaemon(root);
  if (address === undefined) return err;
  return new ErrStoreLocked(
    `cache ${root} is locked by a running daemon at ${address}; use --addr ${address} (or BUILDCACHE_HOST), or connect('${address}') from the API`,
    { cause: err, details: { path: root, address } },
  );
}

/** Opens (creating) the cache at `root` on the embedded backend, or on containerd when `containerd` is given. */
export async function openCache(options: OpenCacheOptions): Promise<OpenCache> {
  const { snapshotter, logger } = options;
  if (snapshotter !== undefined && snapshotter !== 'overlayfs' && snapshotter !== 'native') {
    throw new ErrInvalidArgument(`unknown snapshotter ${JSON.stringify(snapshotter)}; use overlayfs or native`, { details: { id: snapshotter } });
  }
  if (options.namespace !== undefined && options.containerd === undefined) {
    throw new ErrInvalidArgument('a namespace applies only to a containerd backend; give the containerd socket too, or drop the namespace');
  }
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const root = options.containerd ? join(options.root, `containerd-${namespace}`) : options.root;
  const openBackend = (): Promise<Backend> => options.containerd
    ? openContainerdBackend({
        address: options.containerd,
        namespace,
        snapshotter: snapshotter ?? 'overlayfs',
        mountRoot: join(root, 'mounts'),
        ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
        ...(logger ? { logger } : {}),
      })
    : openEmbeddedBackend({ root: join(root, 'backend'), snapshotter: snapshotter ?? 'auto', ...(logger ? { logger } : {}) });
  const backend = await openBackend().catch(async (err: unknown) => {
    throw await lockedByDaemon(options.root, err);
  });
  let cache: CacheManager;
  try {
    cache = await CacheManager.open({ root, backend, ...(logger ? { logger } : {}), ...(options.gc ? { gc: options.gc } : {}) });
  } catch (err) {
    await backend.close();
    throw await lockedByDaemon(options.root, err);
  }
  return {
    cache,
    backend,
    async close() {
      try {
        await cache.close();
      } finally {
        await backend.close();
      }
    },
  };
}
