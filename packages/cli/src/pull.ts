/** `buildcache pull REF`: records an image's layers in the cache; without `--lazy` fetches, verifies, stores and extracts them. */
import type { Operations } from '@buildcache/server/local';
import type { Output } from './terminal.js';

/** Pulls `ref` (here or through the daemon) and prints one line per layer: record ID, blob digest, format, bytes fetched of size. */
export async function pullCommand(ops: Operations, ref: string, lazy: boolean, out: Output): Promise<void> {
  const report = await ops.pull(ref, { lazy });
  for (const l of report.layers) out.write(`${l.id}\t${l.digest}\t${l.format}\t${l.fetched}/${l.size}${l.extracted ? '\textracted' : ''}\n`);
  out.write(`pulled ${ref}: ${report.layers.length} layers${lazy ? ' (lazy)' : ''}, top record ${report.top}\n`);
}
