/** Parsing and printing of sizes and durations the way buildctl, buildx and docker users write and read them. */
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** How a size flag reads a number without a unit. */
export type BareNumber = 'megabytes' | 'refused';

/** The size rule, as `--help` states it. */
export const SIZE_RULE =
  'A bare number is megabytes as in buildctl (--keep-storage 10000 = 10 GB, 1 MB = 1,000,000 bytes); with a unit,\n' +
  "docker's rule: B, K[i][B], M[i][B], G[i][B], T[i][B], P[i][B], any case, are all 1024-based (1GB = 1GiB = 1073741824 bytes).\n" +
  "buildx's spellings (--reserved-space, --max-used-space, --min-free-space) need a unit (buildx reads a bare number as bytes).";

const SIZE = /^(\d+(?:\.\d+)?) ?(?:([kmgtp])(i)?b?|(b))?$/i;
const POWERS: Record<string, number> = { k: 1, m: 2, g: 3, t: 4, p: 5 };

/** Bytes from `10000` (megabytes, as buildctl), `10GB`, `512MiB`, `1.5g`, `4096B` (as docker: 1024-based). */
export function parseSize(text: string, flag: string, bare: BareNumber = 'megabytes'): number {
  const m = SIZE.exec(text);
  if (!m) throw new ErrInvalidArgument(`${flag}: invalid size ${JSON.stringify(text)} (examples: 10GB, 512MiB, 1.5g, 4096B, or 10000 for 10000 MB)`);
  const n = Number(m[1]);
  if (m[2]) return Math.round(n * 1024 ** POWERS[m[2].toLowerCase()]!);
  if (m[4]) return Math.round(n);
  if (bare === 'refused' && n !== 0) {
    throw new ErrInvalidArgument(
      `${flag}: ${JSON.stringify(text)} has no unit (buildx reads it as bytes, buildctl as megabytes); write ${text}B, ${text}MB or ${text}GB`,
    );
  }
  return Math.round(n * 1e6);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** Milliseconds from `48h`, `1h30m`, `7d`, `90s`. */
export function parseDuration(text: string, flag: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) {
    throw new ErrInvalidArgument(`${flag}: invalid duration ${JSON.stringify(text)} (examples: 48h, 30m, 7d, 1h30m)`);
  }
  return total;
}

/** `292B`, `0B`, `14.77MB`: whole bytes, then decimal units with two decimals, as `buildctl du` prints sizes. */
export function formatSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(v)}B` : `${v.toFixed(2)}${units[i]}`;
}

/** `About a minute ago`, `47 hours ago`, `2 weeks ago`: the wording of docker and buildx. */
export function formatAgo(date: Date | undefined, now: number): string {
  if (!date) return '';
  return `${humanDuration(Math.max(0, now - date.getTime()))} ago`;
}

function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3600e3);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3600e3 / 24 / 365)} years`;
}

/** `1 record`, `2 records`. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Left-aligned columns separated by at least two spaces (like Go's tabwriter). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('').trimEnd())
    .join('\n');
}
