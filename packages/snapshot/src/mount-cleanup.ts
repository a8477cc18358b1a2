/** Startup cleanup of the temp mounts a previous (killed) process left in a backend's mount dir. */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { unmount } from './mount.js';

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out: string[] = [];
  for (const line of info.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = unescapeMountPath(field);
    if (point === dir || point.startsWith(dir + '/')) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmounts everything under `mountsDir`, then removes what is left in it (never a live mount). */
export async function cleanupTempMounts(mountsDir: string, logger: Logger): Promise<void> {
  await mkdir(mountsDir, { recursive: true });
  const points = await mountPointsUnder(mountsDir);
  for (const p of points) {
    logger.info({ path: p }, 'unmounting leftover temp mount');
    await unmount(p).catch((err: unknown) => logger.warn({ path: p, err }, 'could not unmount leftover temp mount'));
  }
  const still = await mountPointsUnder(mountsDir);
  for (const name of await readdir(mountsDir)) {
    const path = join(mountsDir, name);
    if (still.some((p) => p === path || p.startsWith(path + '/'))) continue;
    await rm(path, { recursive: true, force: true });
  }
}
