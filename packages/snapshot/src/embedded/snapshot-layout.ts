/**
 * Where snapshots live on disk (`<root>/snapshots/<id>/fs`, overlay `work` beside it), which driver
 * the root uses, and the mount lists each driver hands out — the same shapes as containerd's
 * overlayfs and native snapshotters.
 */
import { access, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '../types.js';
import { mountOne, unmount } from '../mount.js';
import { removeTree } from './fsutil.js';

/** The two snapshot drivers. */
export type SnapshotDriver = 'overlayfs' | 'native';

/** Paths of snapshot `id` under `root`. */
export function snapshotDirs(root: string, id: number): { dir: string; fs: string; work: string } {
  const dir = join(root, 'snapshots', String(id));
  return { dir, fs: join(dir, 'fs'), work: join(dir, 'work') };
}

/** True when the kernel has `index` for overlay, in which case containerd adds `index=off`. */
export async function overlayHasIndexParam(): Promise<boolean> {
  try {
    await access('/sys/module/overlay/parameters/index');
    return true;
  } catch {
    return false;
  }
}

/**
 * Probes overlayfs by mounting a tiny overlay under `<root>/mounts` and reading a lower file
 * through it. False when not root, no overlay support, or the filesystem refuses it.
 */
export async function probeOverlay(root: string): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  const base = join(root, 'mounts');
  await mkdir(base, { recursive: true });
  const dir = await mkdtemp(join(base, 'probe-'));
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((n) => join(dir, n)) as [string, string, string, string];
  let mounted = false;
  try {
    await Promise.all([lower, upper, work, merged].map((d) => mkdir(d)));
    await writeFile(join(lower, 'probe'), 'ok');
    await mountOne({ type: 'overlay', source: 'overlay', options: [`workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`] }, merged);
    mounted = true;
    return (await readFile(join(merged, 'probe'), 'utf8')) === 'ok';
  } catch {
    return false;
  } finally {
    if (mounted) await unmount(merged).catch(() => undefined);
    await removeTree(dir).catch(() => undefined);
  }
}

/** What mount shapes depend on: the driver, `index=off`, and the snapshot and parent-chain dirs. */
export interface MountInput {
  readonly driver: SnapshotDriver;
  readonly indexOff: boolean;
  readonly kind: 'active' | 'view';
  /** Paths of this snapshot. */
  readonly own: { fs: string; work: string };
  /** `fs` dirs of the parent chain, nearest parent first. */
  readonly lowers: readonly string[];
}

/** The mount list of an active snapshot or a view, as containerd's drivers produce it. */
export function mountsFor(m: MountInput): Mount[] {
  if (m.driver === 'native') {
    // native copies the parent into an active snapshot; a view binds the parent's own dir.
    if (m.kind === 'active') return [{ type: 'bind', source: m.own.fs, options: ['rbind', 'rw'] }];
    return [{ type: 'bind', source: m.lowers[0] ?? m.own.fs, options: ['rbind', 'ro'] }];
  }
  const index = m.indexOff ? ['index=off'] : [];
  if (m.kind === 'active') {
    if (m.lowers.length === 0) return [{ type: 'bind', source: m.own.fs, options: ['rw', 'rbind'] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [...index, `workdir=${m.own.work}`, `upperdir=${m.own.fs}`, `lowerdir=${m.lowers.join(':')}`],
      },
    ];
  }
  if (m.lowers.length === 0) return [{ type: 'bind', source: m.own.fs, options: ['ro', 'rbind'] }];
  if (m.lowers.length === 1) return [{ type: 'bind', source: m.lowers[0]!, options: ['ro', 'rbind'] }];
  return [{ type: 'overlay', source: 'overlay', options: [...index, `lowerdir=${m.lowers.join(':')}`] }];
}
