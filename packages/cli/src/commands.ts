/** The `du` and `prune` commands. */
import type { DiskUsageOptions, PruneOptions, PrunePolicy, PruneResult, UsageInfo } from '@buildcache/cache';
import { renderTable, summary, tableRow, TABLE_HEADER, toJSON, totals, verboseBlock } from './output.js';
import type { Output, Progress } from './terminal.js';
import { formatSize, plural, table } from './units.js';

/** What du and prune need of a cache: the in-process one, or a daemon's through its client. */
export interface CacheAccess {
  diskUsage(options: DiskUsageOptions): AsyncIterable<UsageInfo>;
  prune(policies: readonly PrunePolicy[], options: PruneOptions): Promise<PruneResult>;
}

/** Options of `buildcache du`. */
export interface DuOptions {
  readonly filters: readonly string[];
  readonly verbose: boolean;
  readonly format: 'table' | 'json';
}

/** Prints disk usage: a table sorted by size (or verbose blocks), totals and a summary line, or buildctl's JSON array. */
export async function du(cache: CacheAccess, opts: DuOptions, out: Output, progress: Progress): Promise<void> {
  if (opts.format === 'json') {
    out.write('[');
    let first = true;
    for await (const u of cache.diskUsage({ filters: opts.filters })) {
      if (out.closed) return;
      out.write((first ? '\n' : ',\n') + JSON.stringify(toJSON(u)));
      first = false;
    }
    out.write(first ? ']\n' : '\n]\n');
    return;
  }
  const rows: UsageInfo[] = [];
  for await (const u of cache.diskUsage({ filters: opts.filters })) {
    rows.push(u);
    if (rows.length % 1000 === 0) progress.update(`reading ${plural(rows.length, 'record')}…`, true);
  }
  progress.clear();
  rows.sort((a, b) => a.size - b.size || (a.id < b.id ? -1 : 1));
  const now = Date.now();
  if (opts.verbose) for (const u of rows) out.write(verboseBlock(u) + '\n');
  else out.write(renderTable(rows, now) + '\n');
  if (opts.filters.length === 0) out.write((opts.verbose ? '' : '\n') + totals(rows) + '\n');
  out.write(summary(rows) + '\n');
}

/** Options of `buildcache prune`. */
export interface PruneCommandOptions {
  readonly policy: PrunePolicy;
  readonly dryRun: boolean;
  readonly verbose: boolean;
  readonly format: 'table' | 'json';
  /** Aborting stops the prune after its current batch; what was deleted is still reported. */
  readonly signal: AbortSignal;
}

/** What `prune` did, and whether it ran to the end. */
export interface PruneOutcome {
  readonly count: number;
  readonly total: number;
  readonly complete: boolean;
}

/** Prunes, streaming a row (or a JSON line) per record as it goes, then the total. */
export async function pruneCommand(
  cache: CacheAccess,
  opts: PruneCommandOptions,
  out: Output,
  progress: Progress,
): Promise<PruneOutcome> {
  let count = 0;
  let total = 0;
  let headerShown = false;
  const now = Date.now();
  const verb = opts.dryRun ? 'would delete' : 'deleted';
  let complete = true;
  try {
    await cache.prune([opts.policy], {
      dryRun: opts.dryRun,
      signal: opts.signal,
      onDeleted: (u) => {
        count++;
        total += u.size;
        progress.update(`${verb} ${plural(count, 'record')}, ${formatSize(total)}`);
        progress.row(out, pruneRow(u, opts, now, !headerShown));
        headerShown = true;
      },
    });
  } catch (err) {
    if (!opts.signal.aborted || err !== opts.signal.reason) throw err;
    complete = false;
  }
  progress.end();
  if (opts.format === 'json') {
    out.write(JSON.stringify({ dryRun: opts.dryRun, count, total, complete }) + '\n');
  } else {
    out.write(`${opts.dryRun ? 'Total (dry run):' : 'Total:'}\t${formatSize(total)}${complete ? '' : ' (interrupted)'}\n`);
  }
  return { count, total, complete };
}

/** One deleted record as printed: a JSON line, a verbose block, or a table row (with the header first). */
function pruneRow(u: UsageInfo, opts: PruneCommandOptions, now: number, first: boolean): string {
  if (opts.format === 'json') return JSON.stringify(toJSON(u)) + '\n';
  if (opts.verbose) return verboseBlock(u) + '\n';
  const rows = first ? [TABLE_HEADER, tableRow(u, now)] : [tableRow(u, now)];
  // Fixed widths so that streamed rows line up with the header.
  return table(rows.map((r) => [r[0]!.padEnd(28), r[1]!.padEnd(11), r[2]!.padEnd(10), r[3]!])) + '\n';
}
