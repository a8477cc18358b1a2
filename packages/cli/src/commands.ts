/** The `du` and `prune` commands. */
import type { CacheManager, PrunePolicy, UsageInfo } from '@buildcache/cache';
import { Progress, renderTable, tableRow, TABLE_HEADER, toJSON, totals, verboseBlock } from './output.js';
import { formatSize, table } from './units.js';

/** Options of `buildcache du`. */
export interface DuOptions {
  readonly filters: readonly string[];
  readonly verbose: boolean;
  readonly format: 'table' | 'json';
}

/** Prints disk usage: a table sorted by size (or verbose blocks), totals, or JSON. */
export async function du(cache: CacheManager, opts: DuOptions, out: NodeJS.WritableStream): Promise<void> {
  const progress = new Progress();
  if (opts.format === 'json') {
    out.write('[');
    let first = true;
    for await (const u of cache.diskUsage({ filters: opts.filters })) {
      out.write((first ? '\n' : ',\n') + JSON.stringify(toJSON(u)));
      first = false;
    }
    out.write(first ? ']\n' : '\n]\n');
    return;
  }
  const rows: UsageInfo[] = [];
  for await (const u of cache.diskUsage({ filters: opts.filters })) {
    rows.push(u);
    if (rows.length % 1000 === 0) progress.update(`reading ${rows.length} records…`);
  }
  progress.done();
  rows.sort((a, b) => a.size - b.size || (a.id < b.id ? -1 : 1));
  const now = Date.now();
  if (opts.verbose) for (const u of rows) out.write(verboseBlock(u) + '\n');
  else out.write(renderTable(rows, now) + '\n');
  if (opts.filters.length === 0) out.write((opts.verbose ? '' : '\n') + totals(rows) + '\n');
}

/** Options of `buildcache prune`. */
export interface PruneCommandOptions {
  readonly policy: PrunePolicy;
  readonly dryRun: boolean;
  readonly verbose: boolean;
  readonly format: 'table' | 'json';
}

/** Prunes, streaming rows as records go, then the total. */
export async function pruneCommand(cache: CacheManager, opts: PruneCommandOptions, out: NodeJS.WritableStream): Promise<void> {
  const progress = new Progress();
  const deleted: UsageInfo[] = [];
  let reclaimed = 0;
  let headerShown = false;
  const now = Date.now();
  const result = await cache.prune([opts.policy], {
    dryRun: opts.dryRun,
    onDeleted: (u) => {
      reclaimed += u.size;
      progress.update(`${opts.dryRun ? 'would delete' : 'deleted'} ${deleted.length + 1} records, ${formatSize(reclaimed)}`);
      if (opts.format === 'json') {
        deleted.push(u);
        return;
      }
      deleted.push(u);
      progress.done();
      if (opts.verbose) {
        out.write(verboseBlock(u) + '\n');
      } else {
        const rows = headerShown ? [tableRow(u, now)] : [TABLE_HEADER, tableRow(u, now)];
        // Fixed widths so that streamed rows line up with the header.
        out.write(table(rows.map((r) => [r[0]!.padEnd(28), r[1]!.padEnd(11), r[2]!.padEnd(10), r[3]!])) + '\n');
        headerShown = true;
      }
    },
  });
  progress.done();
  if (opts.format === 'json') {
    out.write(JSON.stringify({ dryRun: opts.dryRun, deleted: deleted.map(toJSON), count: result.deleted, total: result.reclaimed }, null, 2) + '\n');
    return;
  }
  out.write(`${opts.dryRun ? 'Total (dry run):' : 'Total:'}\t${formatSize(result.reclaimed)}\n`);
}
