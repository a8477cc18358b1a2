/**
 * Performing mount lists on the local machine, as containerd's clients do: mount(2) through
 * `@buildcache/sys` (no process per mount).
 */
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { ErrFailedPrecondition, ErrInvalidArgument, ErrPermissionDenied } from '@buildcache/errdefs';
import type { ActiveMount, Mount, Mounter } from './types.js';
import { mountSyscall, umountSyscall } from './mount-syscall.js';

/** Kernel limit on mount data is a page; containerd shortens overlay paths past pagesize − 512. */
const MAX_OPTIONS_LENGTH = 4096 - 512;

/** Options of an overlay mount, by name (`lowerdir`, `upperdir`, `workdir`). */
export function overlayOptions(mount: Mount): Map<string, string> {
  const out = new Map<string, string>();
  for (const opt of mount.options) {
    const eq = opt.indexOf('=');
    if (eq > 0) out.set(opt.slice(0, eq), opt.slice(eq + 1));
  }
  return out;
}

/** The directory of a single bind mount, or undefined when `mounts` is anything else. */
export function bindSource(mounts: readonly Mount[]): { source: string; readonly: boolean } | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type !== 'bind' && m.type !== 'rbind') return undefined;
  return { source: m.source, readonly: m.options.includes('ro') };
}

/** The upper and lower dirs of a single overlay mount, or undefined. */
export function overlayDirs(mounts: readonly Mount[]): { upper?: string; work?: string; lowers: string[] } | undefined {
  if (mounts.length !== 1 || mounts[0]!.type !== 'overlay') return undefined;
  const opts = overlayOptions(mounts[0]!);
  const lowers = (opts.get('lowerdir') ?? '').split(':').filter(Boolean);
  const upper = opts.get('upperdir');
  const work = opts.get('workdir');
  return { lowers, ...(upper ? { upper } : {}), ...(work ? { work } : {}) };
}

function commonDir(paths: string[]): string {
  let prefix = dirname(paths[0]!);
  while (!paths.every((p) => p === prefix || p.startsWith(prefix + '/'))) prefix = dirname(prefix);
  return prefix;
}

/** Rewrites a long overlay option list relative to the common parent of its dirs (mounted with that cwd). */
function shortenOverlay(mount: Mount): { options: string[]; cwd?: string } {
  const joined = mount.options.join(',');
  if (mount.type !== 'overlay' || joined.length < MAX_OPTIONS_LENGTH) return { options: [...mount.options] };
  const dirs: string[] = [];
  for (const opt of mount.options) {
    const [k, v] = opt.split('=', 2) as [string, string | undefined];
    if (v && (k === 'lowerdir' || k === 'upperdir' || k === 'workdir')) dirs.push(...v.split(':'));
  }
  const cwd = commonDir(dirs);
  const options = mount.options.map((opt) => {
    const [k, v] = opt.split('=', 2) as [string, string | undefined];
    if (!v || !(k === 'lowerdir' || k === 'upperdir' || k === 'workdir')) return opt;
    return `${k}=${v.split(':').map((d) => relative(cwd, d)).join(':')}`;
  });
  if (options.join(',').length >= 4096) {
    throw new ErrInvalidArgument(`overlay mount options are too long (${joined.length} bytes) even when shortened`, {
      details: { path: cwd },
    });
  }
  return { options, cwd };
}

/** Mounts one mount on `target` (mount(2)). */
export async function mountOne(mount: Mount, target: string): Promise<void> {
  const { options, cwd } = shortenOverlay(mount);
  try {
    await mountSyscall(mount.type, mount.source, target, options, cwd);
  } catch (err) {
    throw new ErrFailedPrecondition(`mount ${mount.type} ${mount.source} on ${target} failed: ${errCode(err)}`, {
      cause: err,
      details: { path: target },
    });
  }
}

const errCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

/** Unmounts `target` (a no-op when nothing is mounted there), retrying while it is busy. */
export async function unmount(target: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await umountSyscall(target);
      return;
    } catch (err) {
      const code = errCode(err);
      if (code === 'EINVAL' || code === 'ENOENT') return; // not a mount point
      if (code !== 'EBUSY' || attempt >= 20) {
        throw new ErrFailedPrecondition(`umount ${target} failed: ${code}`, { cause: err, details: { path: target } });
      }
      await new Promise((r) => setTimeout(r, 25 * (attempt + 1)));
    }
  }
}

/** True when this process may call mount(2) (it runs as root). */
export function mayMount(): boolean {
  return process.geteuid?.() === 0;
}

/**
 * Mounts mount lists on temp dirs. A single rw bind mount is handed out as its directory; so is a
 * read-only one when the process may not mount (not root): the caller's contract is then to not
 * write through it.
 */
export class LocalMounter implements Mounter {
  /**
   * @param tempRoot where temp mount points are made (defaults to the OS temp dir).
   * @param privileged whether mount(2) is allowed (default: running as root).
   */
  constructor(
    private readonly tempRoot: string = tmpdir(),
    private readonly privileged: boolean = mayMount(),
  ) {}

  async mount(mounts: readonly Mount[]): Promise<ActiveMount> {
    if (mounts.length === 0) throw new ErrInvalidArgument('no mounts to mount');
    const bind = bindSource(mounts);
    if (bind && (!bind.readonly || !this.privileged)) return { target: bind.source, unmount: async () => undefined };
    if (!this.privileged) {
      const what = mounts.map((m) => m.type).join('+');
      throw new ErrPermissionDenied(`mounting ${what} needs root (this process runs as uid ${process.geteuid?.()}); use the native snapshotter`, {
        details: { path: mounts[0]!.source },
      });
    }
    const target = await mkdtemp(join(this.tempRoot, 'buildcache-mount-'));
    const done: string[] = [];
    try {
      for (const m of mounts) {
        const at = m.target ? join(target, m.target) : target;
        await mountOne(m, at);
        done.push(at);
      }
    } catch (err) {
      for (const at of done.reverse()) await unmount(at).catch(() => undefined);
      await rmdir(target).catch(() => undefined);
      throw err;
    }
    let unmounted = false;
    return {
      target,
      unmount: async () => {
        if (unmounted) return;
        for (const at of done.slice().reverse()) await unmount(at);
        await rmdir(target);
        unmounted = true;
      },
    };
  }

  readonly(mounts: readonly Mount[]): Mount[] {
    return mounts.map(readonlyMount);
  }
}

/** The read-only form of one mount: overlay upperdir folded into lowerdir, else `ro` added. */
export function readonlyMount(m: Mount): Mount {
  if (m.type === 'overlay') {
    const opts = overlayOptions(m);
    const upper = opts.get('upperdir');
    const lowers = (opts.get('lowerdir') ?? '').split(':').filter(Boolean);
    if (upper) lowers.unshift(upper);
    const rest = m.options.filter((o) => !/^(upperdir|workdir|lowerdir)=/.test(o) && o !== 'rw');
    if (lowers.length === 1) {
      // overlay needs two lowers without an upper; one lower is a read-only bind
      return { type: 'bind', source: lowers[0]!, options: ['ro', 'rbind'] };
    }
    return { type: 'overlay', source: m.source, options: [...rest, `lowerdir=${lowers.join(':')}`] };
  }
  const options = m.options.filter((o) => o !== 'rw' && o !== 'ro');
  return { ...m, options: ['ro', ...options] };
}
