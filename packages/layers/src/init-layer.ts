/**
 * The files Docker's `-init` layer holds: mount points and placeholders that the container runtime
 * bind-mounts over (hosts, hostname, resolv.conf, /dev/console...), so that the container's own
 * layer never records them as changes.
 */
import { lstat, mkdir, open, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** What the init layer holds: path → `dir`, `file`, or a symlink target. */
export const INIT_LAYER_ENTRIES: ReadonlyMap<string, 'dir' | 'file' | { readonly symlink: string }> = new Map<string, 'dir' | 'file' | { readonly symlink: string }>([
  ['/dev/pts', 'dir'],
  ['/dev/shm', 'dir'],
  ['/proc', 'dir'],
  ['/sys', 'dir'],
  ['/.dockerenv', 'file'],
  ['/etc/resolv.conf', 'file'],
  ['/etc/hosts', 'file'],
  ['/etc/hostname', 'file'],
  ['/dev/console', 'file'],
  ['/etc/mtab', { symlink: '/proc/mounts' }],
]);

/**
 * Writes the init layer's entries into `root` (a container's init layer mounted writable), mode
 * 0755. Like Docker, every non-directory standing on an entry's path (a file, a symlink — the entry
 * itself included) is removed first, so nothing is written through a symlink out of `root`; a
 * directory that exists is kept.
 */
export async function setupInitLayer(root: string): Promise<void> {
  for (const [path, kind] of INIT_LAYER_ENTRIES) {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const at = join(root, ...parts.slice(0, i));
      const st = await lstat(at).catch(() => undefined);
      if (st && !st.isDirectory()) await unlink(at);
      if (i < parts.length && !st?.isDirectory()) await mkdir(at, { mode: 0o755 });
      else if (i === parts.length && !st?.isDirectory()) {
        if (kind === 'dir') await mkdir(at, { mode: 0o755 });
        else if (kind === 'file') await (await open(at, 'wx', 0o755)).close();
        else await symlink(kind.symlink, at);
      }
    }
  }
}
