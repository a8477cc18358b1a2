/** The image store's test stack (cache, layer store, image store on one backend) and tree comparison. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ImageStore } from '@buildcache/images';
import { LayerStore } from '@buildcache/layers';
import type { Backend } from '@buildcache/snapshot';

const run = promisify(execFile);

/** A cache, its layer store and an image store over it, under `dir`. */
export class Stack {
  private constructor(
    readonly cache: CacheManager,
    readonly layers: LayerStore,
    readonly images: ImageStore,
  ) {}

  static async open(backend: Backend, dir: string): Promise<Stack> {
    const cache = await CacheManager.open({ root: join(dir, 'cache'), backend, logger: pino({ level: 'silent' }) });
    const layers = await LayerStore.open({ cache, root: join(dir, 'layers') });
    const images = await ImageStore.open({ layers, root: join(dir, 'layers', 'images') });
    return new Stack(cache, layers, images);
  }

  async close(): Promise<void> {
    await this.images.close();
    await this.layers.close();
    await this.cache.close();
  }

  /** Cache records that exist now. */
  async records(): Promise<number> {
    let n = 0;
    for await (const u of this.cache.diskUsage()) if (u.id) n++;
    return n;
  }

  /** Runs `fn` on the layer `chainID`'s files, mounted read-only. */
  async withLayerMounted<T>(chainID: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const meta = this.layers.list().find((m) => m.chainID === chainID);
    if (!meta) throw new Error(`no layer ${chainID}`);
    const ref = await this.cache.get(meta.recordId);
    try {
      const mount = await ref.mount({ readonly: true });
      try {
        return await fn(mount.target);
      } finally {
        await mount.unmount();
      }
    } finally {
      await ref.release();
    }
  }
}

const TREE_PY = `
import hashlib, json, os, stat, sys, fnmatch
root, excludes = sys.argv[1], json.loads(sys.argv[2])
out = {}
for d, dirs, files in os.walk(root):
    for name in sorted(dirs + files):
        p = os.path.join(d, name); rel = './' + os.path.relpath(p, root)
        if any(fnmatch.fnmatch(rel, x) for x in excludes): continue
        st = os.lstat(p)
        what = ''
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for c in iter(lambda: f.read(1 << 20), b''): h.update(c)
            what = h.hexdigest()
        elif stat.S_ISLNK(st.st_mode): what = os.readlink(p)
        out[rel] = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what]
print(json.dumps(out, sort_keys=True))
`;

/** Every entry under `root` (type, mode, owner, content hash or link target), leaving out `exclude` globs. */
export async function treeOf(root: string, exclude: readonly string[] = []): Promise<Record<string, unknown>> {
  const { stdout } = await run('python3', ['-c', TREE_PY, root, JSON.stringify(exclude)], { maxBuffer: 256 << 20 });
  return JSON.parse(stdout) as Record<string, unknown>;
}
