/**
 * A process that keeps an import in progress in an image store it shares with another process:
 * opens its own cache and layer store under argv[2] and the image store at argv[3], starts an
 * import whose source never ends, and waits to be killed.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import { openEmbeddedBackend } from '@buildcache/snapshot';

const [dir, imagesRoot] = process.argv.slice(2) as [string, string];
const logger = pino({ level: 'silent' });
const backend = await openEmbeddedBackend({ root: join(dir, 'backend'), snapshotter: 'native', logger });
const cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger });
const layers = await LayerStore.open({ cache, root: join(dir, 'layers') });
const images = await ImageStore.open({ layers, root: imagesRoot });

/** One 64 KiB chunk of an archive, then nothing, ever. */
async function* endless(): AsyncGenerator<Buffer> {
  yield Buffer.alloc(65536);
  await new Promise(() => setInterval(() => undefined, 1000));
}

await images.import(endless());
