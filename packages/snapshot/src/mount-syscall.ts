/**
 * mount(2) and umount2(2) through `@buildcache/sys` (on the libuv pool, no process per mount).
 * Mount options are split into flags and data as mount(8) and containerd do; a read-only bind is a
 * bind followed by a read-only remount.
 */
import { MS, mount, umount } from '@buildcache/sys';

/** Options that are flags: [set, clear]. Everything else is filesystem data. */
const FLAG_OPTIONS: Record<string, readonly [number, number]> = {
  async: [0, MS.SYNCHRONOUS], atime: [0, MS.NOATIME], bind: [MS.BIND, 0], defaults: [0, 0], dev: [0, MS.NODEV],
  diratime: [0, MS.NODIRATIME], dirsync: [MS.DIRSYNC, 0], exec: [0, MS.NOEXEC], mand: [MS.MANDLOCK, 0],
  noatime: [MS.NOATIME, 0], nodev: [MS.NODEV, 0], nodiratime: [MS.NODIRATIME, 0], noexec: [MS.NOEXEC, 0],
  nomand: [0, MS.MANDLOCK], norelatime: [0, MS.RELATIME], nostrictatime: [0, MS.STRICTATIME],
  nosuid: [MS.NOSUID, 0], rbind: [MS.BIND | MS.REC, 0], relatime: [MS.RELATIME, 0], remount: [MS.REMOUNT, 0],
  ro: [MS.RDONLY, 0], rw: [0, MS.RDONLY], strictatime: [MS.STRICTATIME, 0], suid: [0, MS.NOSUID],
  sync: [MS.SYNCHRONOUS, 0],
};

/** Flags and data of a mount option list. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const opt of options) {
    const f = FLAG_OPTIONS[opt];
    if (f) flags = (flags | f[0]) & ~f[1];
    else data.push(opt);
  }
  return { flags, data: data.join(',') };
}

/** mount(2) of one mount; a read-only bind gets its read-only remount. `cwd` resolves shortened overlay paths. */
export async function mountSyscall(type: string, source: string, target: string, options: readonly string[], cwd = ''): Promise<void> {
  const { flags, data } = parseMountOptions(options);
  const fstype = type === 'bind' || type === 'rbind' ? '' : type;
  const bindFlags = type === 'rbind' ? MS.BIND | MS.REC : type === 'bind' ? MS.BIND : 0;
  const all = flags | bindFlags;
  await mount(source, target, fstype, all & ~(all & MS.BIND ? MS.RDONLY : 0), data, cwd);
  if (all & MS.BIND && all & MS.RDONLY) await mount('', target, '', MS.REMOUNT | MS.BIND | (all & ~MS.REC));
}

/** umount2(2). */
export async function umountSyscall(target: string): Promise<void> {
  await umount(target);
}
