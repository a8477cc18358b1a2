/**
 * The content checksum of a COPY's sources: names, types, modes, sizes, link targets and file
 * bytes of everything the sources cover in the context (after `.dockerignore`) — not times, so a
 * touched file keeps its checksum and its COPY stays cached.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { IgnoreMatcher } from './dockerignore.js';
import type { CopySource } from './copy.js';

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function entry(h: Hash, context: string, rel: string, name: string, ignore: IgnoreMatcher): Promise<void> {
  const path = join(context, rel);
  const st = await lstat(path);
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isDirectory()) {
    h.update(`d ${name} ${mode}\n`);
    for (const child of (await readdir(path)).sort()) {
      const childRel = rel === '.' ? child : `${rel}/${child}`;
      if (ignore.ignores(childRel) && !ignore.hasExceptions) continue;
      const cst = await lstat(join(context, childRel));
      if (!cst.isDirectory() && ignore.ignores(childRel)) continue;
      await entry(h, context, childRel, `${name}/${child}`, ignore);
    }
  } else if (st.isSymbolicLink()) h.update(`l ${name} ${mode} ${await readlink(path)}\n`);
  else if (st.isFile()) h.update(`f ${name} ${mode} ${st.size} ${await fileDigest(path)}\n`);
}

/** sha256 digest over every source of one COPY, in order. */
export async function checksumSources(context: string, sources: readonly CopySource[], ignore: IgnoreMatcher): Promise<string> {
  const h = createHash('sha256');
  for (const s of sources) {
    h.update(`source ${s.rel}\n`);
    await entry(h, context, s.rel, '.', ignore);
  }
  return 'sha256:' + h.digest('hex');
}
