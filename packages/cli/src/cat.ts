/** `buildcache cat REF PATH`: one file of a remote image on stdout, fetching only its chunks from eStargz layers. */
import type { Operations } from '@buildcache/server/local';

/** Writes file `path` of image `ref` to `write` (read here or through the daemon). */
export async function catCommand(ops: Operations, ref: string, path: string, write: (chunk: Buffer) => Promise<void>): Promise<void> {
  for await (const chunk of ops.cat(ref, path)) await write(chunk);
}
