/** Resident memory of this process from the kernel (`/proc/self`), for benchmarks: not sampled. */
import { readFile, writeFile } from 'node:fs/promises';

const MiB = 2 ** 20;

async function statusKiB(field: 'VmHWM' | 'VmRSS' | 'RssAnon' | 'RssFile'): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!m) throw new Error(`/proc/self/status has no ${field}`);
  return Number(m[1]);
}

/** Resets the kernel's peak-RSS high-water mark (`VmHWM`) to the current RSS. */
export function resetPeakRss(): Promise<void> {
  return writeFile('/proc/self/clear_refs', '5');
}

/** The kernel's high-water mark of resident memory (`VmHWM`) since start or the last reset, in MiB. */
export async function peakRssMiB(): Promise<number> {
  return Math.round(((await statusKiB('VmHWM')) * 1024) / MiB);
}

/** Resident memory now (`VmRSS`), in MiB. */
export async function rssMiB(): Promise<number> {
  return Math.round(((await statusKiB('VmRSS')) * 1024) / MiB);
}

/**
 * Resident memory now split by kind, in MiB: `anon` (JS heap, native allocations), `file` (the node
 * binary and libraries' pages), and `v8` (the JS heap's resident pages, part of `anon`).
 */
export async function residentSplitMiB(): Promise<{ anon: number; file: number; v8: number }> {
  const { getHeapStatistics } = await import('node:v8');
  return {
    anon: Math.round(((await statusKiB('RssAnon')) * 1024) / MiB),
    file: Math.round(((await statusKiB('RssFile')) * 1024) / MiB),
    v8: Math.round(getHeapStatistics().total_physical_size / MiB),
  };
}
