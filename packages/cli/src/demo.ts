/** `buildcache demo`'s output: what the demo (here or on the daemon) built and exported. */
import type { DemoReport } from '@buildcache/server/local';
import type { Output } from './terminal.js';
import { formatSize } from './units.js';

/** Prints the demo's records and layers. */
export function printDemo(report: DemoReport, out: Output): void {
  out.write('building a two-layer chain:\n');
  out.write(`  base  ${report.base}\n`);
  out.write(`  app   ${report.app}\n`);
  out.write('exporting (getRemote, gzip):\n');
  report.layers.forEach((l, i) => {
    out.write(`  layer ${i}: ${l.digest}  ${formatSize(l.size)}\n`);
    out.write(`           diffID  ${l.diffID}\n           chainID ${l.chainID}\n`);
  });
  out.write('\n');
}
