/** Parsing and printing of sizes and durations the way buildctl and docker users write them. */
import { ErrInvalidArgument } from '@buildcache/errdefs';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3, ti: 1024 ** 4, tib: 1024 ** 4,
};

/** Bytes from `10GB`, `512MiB`, `1.5g`, `4096` (decimal units are powers of 1000, `i` units of 1024). */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const factor = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) {
    throw new ErrInvalidArgument(`${flag}: invalid size ${JSON.stringify(text)} (examples: 10GB, 512MB, 1.5GiB, 4096)`);
  }
  return Math.round(Number(m[1]) * factor);
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

/** `14.77MB`: decimal units with two decimals, as `buildctl du` prints sizes. */
export function formatSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(2)}${units[i]}`;
}

/** `3 minutes ago`, `2 days ago`, `Less than a second ago`. */
export function formatAgo(date: Date | undefined, now: number): string {
  if (!date) return '';
  const s = Math.max(0, (now - date.getTime()) / 1000);
  if (s < 1) return 'Less than a second ago';
  const steps: [number, string][] = [[60, 'second'], [60, 'minute'], [24, 'hour'], [7, 'day'], [4.35, 'week'], [12, 'month'], [Infinity, 'year']];
  let v = s;
  for (const [limit, name] of steps) {
    if (v < limit) {
      const n = Math.floor(v);
      return `${n} ${name}${n === 1 ? '' : 's'} ago`;
    }
    v /= limit;
  }
  return '';
}

/** Left-aligned columns separated by at least two spaces (like Go's tabwriter). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('').trimEnd())
    .join('\n');
}
