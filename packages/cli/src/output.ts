/** Printing of usage records: buildctl-style tables and verbose blocks, totals, a summary line, JSON. */
import type { UsageInfo } from '@buildcache/cache';
import { formatAgo, formatSize, plural, table } from './units.js';

/** A usage record as JSON (dates as RFC 3339). */
export function toJSON(u: UsageInfo): Record<string, unknown> {
  return {
    id: u.id,
    mutable: u.mutable,
    inUse: u.inUse,
    size: u.size,
    createdAt: u.createdAt.toISOString(),
    lastUsedAt: u.lastUsedAt?.toISOString() ?? null,
    usageCount: u.usageCount,
    parents: u.parents,
    description: u.description ?? '',
    recordType: u.recordType,
    shared: u.shared,
  };
}

/** The header and row cells of `buildctl du`'s table, with LAST ACCESSED filled in. */
export const TABLE_HEADER = ['ID', 'RECLAIMABLE', 'SIZE', 'LAST ACCESSED'];

/** One table row. */
export function tableRow(u: UsageInfo, now: number): string[] {
  return [
    u.id + (u.mutable ? '*' : ''),
    String(!u.inUse),
    formatSize(u.size) + (u.shared ? '*' : ''),
    formatAgo(u.lastUsedAt, now),
  ];
}

/** Rows as an aligned table. */
export function renderTable(rows: readonly UsageInfo[], now: number): string {
  return table([TABLE_HEADER, ...rows.map((u) => tableRow(u, now))]);
}

/** A verbose block, as `buildctl du -v` prints one. */
export function verboseBlock(u: UsageInfo): string {
  const lines: [string, string][] = [['ID:', u.id]];
  if (u.parents.length) lines.push(['Parents:', u.parents.join(';')]);
  lines.push(
    ['Created at:', u.createdAt.toISOString()],
    ['Mutable:', String(u.mutable)],
    ['Reclaimable:', String(!u.inUse)],
    ['Shared:', String(u.shared)],
    ['Size:', formatSize(u.size)],
  );
  if (u.description) lines.push(['Description:', u.description]);
  lines.push(['Usage count:', String(u.usageCount)]);
  if (u.lastUsedAt) lines.push(['Last used:', formatAgo(u.lastUsedAt, Date.now())]);
  lines.push(['Type:', u.recordType]);
  return table(lines) + '\n';
}

interface Sums {
  readonly shared: number;
  readonly priv: number;
  readonly reclaimable: number;
  readonly inUse: number;
}

function sums(rows: readonly UsageInfo[]): Sums {
  let shared = 0;
  let priv = 0;
  let reclaimable = 0;
  let inUse = 0;
  for (const u of rows) {
    if (u.inUse) inUse++;
    if (u.size <= 0) continue;
    if (u.shared) shared += u.size;
    else priv += u.size;
    if (!u.inUse) reclaimable += u.size;
  }
  return { shared, priv, reclaimable, inUse };
}

/** The totals block under `du`: Shared and Private only when something is shared. */
export function totals(rows: readonly UsageInfo[]): string {
  const { shared, priv, reclaimable } = sums(rows);
  const lines: [string, string][] = [];
  if (shared > 0) lines.push(['Shared:', formatSize(shared)], ['Private:', formatSize(priv)]);
  lines.push(['Reclaimable:', formatSize(reclaimable)], ['Total:', formatSize(shared + priv)]);
  return table(lines);
}

/** A `docker system df`-style line: how many records, how many in use, how much is reclaimable. */
export function summary(rows: readonly UsageInfo[]): string {
  const { shared, priv, reclaimable, inUse } = sums(rows);
  const total = shared + priv;
  const pct = total > 0 ? Math.round((reclaimable * 100) / total) : 0;
  return `${plural(rows.length, 'record')}, ${inUse} in use, ${formatSize(reclaimable)} of ${formatSize(total)} reclaimable (${pct}%)`;
}
