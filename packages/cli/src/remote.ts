/** What the registry commands share: a registry client and a layer manager under the cache root. */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { LayerManager } from '@buildcache/lazy';
import { RegistryClient } from '@buildcache/registry';

/** Runs `fn` with a registry client and a layer manager (local copies in `<root>/lazy`), closing both afterwards. */
export async function withRemote<T>(root: string, logger: Logger, background: boolean, fn: (client: RegistryClient, manager: LayerManager) => Promise<T>): Promise<T> {
  const client = new RegistryClient({ logger });
  const manager = new LayerManager({ dir: join(root, 'lazy'), logger, background });
  try {
    return await fn(client, manager);
  } finally {
    await manager.close();
    await client.close();
  }
}
