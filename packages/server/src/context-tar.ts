/**
 * The client's side of a build over the daemon: the build context directory as a tar stream, read
 * with the client's own rights, `.dockerignore` applied here (the file itself is always sent, as
 * Docker sends it, so the daemon computes the same cache keys). Directories, regular files and
 * symlinks are sent; sockets, fifos and devices are skipped.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack, type Pack } from 'tar-stream';
import { PatternMatcher, readDockerignore } from '@buildcache/contenthash';

/** Always sent, even when `.dockerignore` names them. */
const ALWAYS = new Set(['.dockerignore', 'Dockerfile']);

async function addTree(p: Pack, dir: string, rel: string, ignore: PatternMatcher): Promise<void> {
  const names = (await readdir(join(dir, rel))).sort();
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    const abs = join(dir, path);
    const st = await lstat(abs);
    const ignored = !(rel === '' && ALWAYS.has(name)) && ignore.matches(path);
    const base = { name: path, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 };
    if (st.isDirectory()) {
      // An ignored directory may still hold re-included paths (`!pattern`).
      if (ignored && !ignore.hasNegations) continue;
      if (!ignored) p.entry({ ...base, type: 'directory' });
      await addTree(p, dir, path, ignore);
    } else if (ignored) {
      continue;
    } else if (st.isSymbolicLink()) {
      p.entry({ ...base, type: 'symlink', linkname: await readlink(abs) });
    } else if (st.isFile()) {
      await pipeline(createReadStream(abs), p.entry({ ...base, type: 'file', size: st.size }));
    }
  }
}

/** The context directory `dir` as a tar stream. */
export async function* contextTar(dir: string): AsyncGenerator<Buffer> {
  const ignore = new PatternMatcher(await readDockerignore(dir));
  const p = pack();
  const producing = addTree(p, dir, '', ignore).then(
    () => p.finalize(),
    (err: unknown) => p.destroy(err as Error),
  );
  try {
    yield* p as AsyncIterable<Buffer>;
  } finally {
    p.destroy();
    await producing;
  }
}
