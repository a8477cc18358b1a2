/**
 * Reading an image archive: the tar (plain, gzip or zstd) is read once and each regular file is
 * spooled into a work directory under a numbered name — entry names never become paths — with its
 * size and sha256 (symlinks and hard links to such a file name the same bytes), so that the index, manifests and configs can be read and checked before any layer
 * is registered, whatever order the archive holds its files in.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { BuildcacheError, ErrNotAnImageArchive, ErrNotFound, ErrPermissionDenied } from '@buildcache/errdefs';
import { decompress } from '@buildcache/snapshot';

/** A source of archive bytes. */
export type ArchiveSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** One regular file of the archive, spooled. */
export interface SpooledFile {
  /** Where its bytes are. */
  readonly path: string;
  readonly size: number;
  /** sha256 of its bytes. */
  readonly digest: string;
}

/** The archive's regular files by their normalized name (`blobs/sha256/…`, `manifest.json`). */
export class Spool {
  constructor(readonly files: ReadonlyMap<string, SpooledFile>) {}

  /** The file `name` (normalized), or undefined. */
  get(name: string): SpooledFile | undefined {
    return this.files.get(normalize(name));
  }

  /** The bytes of the file `name` (small files: index, manifests, configs). */
  async read(name: string): Promise<Buffer | undefined> {
    const f = this.get(name);
    return f && readFile(f.path);
  }
}

/** An entry name as a key: no leading `./` or `/`, no `..` escapes (those keep their dots and match nothing). */
export function normalize(name: string): string {
  const n = posix.normalize(`/${name}`).slice(1);
  return n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Hashes and counts what passes through. */
class Hashing extends Writable {
  readonly hash = createHash('sha256');
  size = 0;
  constructor(private readonly out: Writable) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.out.write(chunk)) cb();
    else this.out.once('drain', () => cb());
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.out.end(cb);
  }
}

/** Reads the whole archive into `dir` (which must exist and be empty). Not a tar: ErrNotAnImageArchive. */
export async function spool(source: ArchiveSource, dir: string, what: string): Promise<Spool> {
  const files = new Map<string, SpooledFile>();
  const extract = tar.extract();
  let n = 0;
  const links: [string, string][] = [];
  extract.on('entry', (header, stream, next) => {
    // docker save writes a repeated layer as a symlink to the first copy
    if (header.type === 'symlink' && header.linkname) links.push([normalize(header.name), normalize(posix.join(posix.dirname(header.name), header.linkname))]);
    if (header.type === 'link' && header.linkname) links.push([normalize(header.name), normalize(header.linkname)]);
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      stream.resume();
      stream.on('end', next);
      return;
    }
    const path = join(dir, String(n++));
    const sink = new Hashing(createWriteStream(path));
    pipeline(stream, sink).then(() => {
      files.set(normalize(header.name), { path, size: sink.size, digest: `sha256:${sink.hash.digest('hex')}` });
      next();
    }, next);
  });
  try {
    await pipeline(Readable.from(decompress(source, 'auto')), extract);
  } catch (err) {
    if (err instanceof BuildcacheError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ErrNotFound(`${what} does not exist`, { cause: err, details: { path: what } });
    if (code === 'EACCES' || code === 'EPERM') throw new ErrPermissionDenied(`${what} cannot be read: permission denied`, { cause: err, details: { path: what } });
    throw new ErrNotAnImageArchive(`${what} is not a readable tar archive (${(err as Error).message}); give an OCI image layout or a docker save archive`, {
      cause: err,
      details: { path: what },
    });
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const [name, target] of links) {
      const f = files.get(target);
      if (f && !files.has(name)) {
        files.set(name, f);
        changed = true;
      }
    }
  }
  return new Spool(files);
}
