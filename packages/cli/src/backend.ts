/** Opening the backend the global flags ask for: the embedded one by default, or a containerd socket. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/cache';

/** Global flags that choose where the cache lives. */
export interface BackendFlags {
  readonly root?: string;
  readonly containerd?: string;
  readonly namespace: string;
  readonly snapshotter?: string;
}

/** The default cache root: `$XDG_DATA_HOME/buildcache`, else `~/.local/share/buildcache`. */
export function defaultRoot(): string {
  const xdg = process.env.XDG_DATA_HOME;
  return join(xdg && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'buildcache');
}

/** The cache root for these flags (containerd caches keep their metadata apart, per namespace). */
export function cacheRoot(flags: BackendFlags): string {
  const root = flags.root ?? defaultRoot();
  return flags.containerd ? join(root, `containerd-${flags.namespace}`) : root;
}

/** Opens the backend. */
export async function openBackend(flags: BackendFlags, logger: Logger): Promise<Backend> {
  const snapshotter = flags.snapshotter;
  if (snapshotter !== undefined && snapshotter !== 'overlayfs' && snapshotter !== 'native') {
    throw new ErrInvalidArgument(`--snapshotter: unknown snapshotter ${JSON.stringify(snapshotter)}; use overlayfs or native`);
  }
  if (flags.containerd) {
    return openContainerdBackend({
      address: flags.containerd,
      namespace: flags.namespace,
      snapshotter: snapshotter ?? 'overlayfs',
      mountRoot: join(cacheRoot(flags), 'mounts'),
      logger,
    });
  }
  return openEmbeddedBackend({ root: join(cacheRoot(flags), 'backend'), snapshotter: snapshotter ?? 'auto', logger });
}
