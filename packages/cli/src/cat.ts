/** `buildcache cat REF PATH`: one file of a remote image on stdout, fetching only its chunks from eStargz layers. */
import type { LayerManager } from '@buildcache/lazy';
import { openRemoteImage } from '@buildcache/lazy';
import type { RegistryClient } from '@buildcache/registry';

/** Writes file `path` of image `ref` to `write`. */
export async function catCommand(client: RegistryClient, manager: LayerManager, ref: string, path: string, write: (chunk: Buffer) => Promise<void>): Promise<void> {
  const image = await openRemoteImage(client, manager, ref);
  try {
    for await (const chunk of image.readFileChunks(path)) await write(chunk);
  } finally {
    image.release();
  }
}
