/**
 * Where a command runs: on a cache opened in this process, or through the daemon at an address (its
 * client). Each helper closes what it opened; gRPC and the Workspace's modules load only when used.
 */
import type { Logger } from 'pino';
import { openCache, type OpenCache, type OpenCacheOptions } from '@buildcache/cache';
import type { CacheClient } from '@buildcache/server';
import type { Operations, Workspace } from '@buildcache/server/local';
import type { CacheAccess } from './commands.js';

/** A cache to open here, or the address of a daemon that serves one. */
export type Target = OpenCacheOptions | string;

/** Runs `fn` on the cache `target` names (or on the daemon at that address), closing it afterwards. */
export async function withCache<T>(target: Target, fn: (cache: CacheAccess) => Promise<T>): Promise<T> {
  if (typeof target !== 'string') return withOpenCache(target, (opened) => fn(opened.cache));
  return withDaemon(target, fn);
}

/** Runs `fn` on the operations of the cache `target` names (a Workspace here) or of the daemon at that address, closing them afterwards. */
export async function withOperations<T>(target: Target, logger: Logger, fn: (ops: Operations) => Promise<T>): Promise<T> {
  return typeof target === 'string' ? withDaemon(target, fn) : withWorkspace(target, logger, fn);
}

/** Runs `fn` on the client of the daemon at `address`, closing it afterwards. */
export async function withDaemon<T>(address: string, fn: (client: CacheClient) => Promise<T>): Promise<T> {
  const client = (await import('@buildcache/server')).connect(address);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Runs `fn` on a Workspace over the cache `options` names (and on that cache), opened in this process, closing both afterwards. */
export async function withWorkspace<T>(options: OpenCacheOptions, logger: Logger, fn: (ws: Workspace, opened: OpenCache) => Promise<T>): Promise<T> {
  const { Workspace } = await import('@buildcache/server/local');
  return withOpenCache(options, async (opened) => {
    const ws = new Workspace(opened, options.root, logger);
    try {
      return await fn(ws, opened);
    } finally {
      await ws.close();
    }
  });
}

/** Runs `fn` on the cache `options` names, opened in this process, closing it afterwards. */
export async function withOpenCache<T>(options: OpenCacheOptions, fn: (opened: OpenCache) => Promise<T>): Promise<T> {
  const opened = await openCache(options);
  try {
    return await fn(opened);
  } finally {
    await opened.close();
  }
}
