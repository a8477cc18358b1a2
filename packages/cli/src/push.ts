/**
 * `buildcache push NAME|RECORD REF`: an image of the image store (its config kept) or a record's
 * chain (minimal config) as an OCI image in a registry.
 */
import type { Operations } from '@buildcache/server/local';
import type { Output } from './terminal.js';

/** Pushes image or record `name` to `ref` (here or through the daemon); prints the layers and the manifest digest. */
export async function pushCommand(ops: Operations, name: string, ref: string, compression: string | undefined, out: Output): Promise<void> {
  const pushed = await ops.push(name, ref, compression);
  for (const l of pushed.layers) out.write(`${l.digest}\t${l.size}\n`);
  out.write(`pushed ${ref}@${pushed.digest}\n`);
}
