/**
 * Named images the frontend built (`build -t NAME`), so that a later `FROM NAME` starts from them:
 * one JSON file per name holding the manifest digest, the config and the top layer's record.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrInvalidArgument, ErrNotFound } from '@buildcache/errdefs';
import type { ImageConfig } from './dockerfile/plan.js';

/** What a name points at. */
export interface TaggedImage {
  readonly name: string;
  /** Manifest digest: the image's identity, and the cache input of the first step built on it. */
  readonly digest: string;
  readonly config: ImageConfig;
  /** The record of the top layer (none for an image without layers). */
  readonly record?: string;
}

/** `app` → `docker.io/library/app:latest`; `reg:5000/x/app:v1` unchanged. */
export function normalizeName(name: string): string {
  if (!/^[a-z0-9]+(?:[._\-/:@][a-zA-Z0-9_.-]+)*$/.test(name) || name.length > 255) {
    throw new ErrInvalidArgument(`invalid image name ${JSON.stringify(name)}: use lower-case letters, digits and . _ - / : (e.g. myapp:1.0)`, { details: { id: name } });
  }
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  let full = first.includes('.') || first.includes(':') || first === 'localhost' ? name : `docker.io/${slash < 0 ? 'library/' : ''}${name}`;
  if (!/:[^/]+$/.test(full) && !full.includes('@')) full += ':latest';
  return full;
}

/** The frontend's name → image table, under `<frontend root>/images`. */
export class Tags {
  constructor(private readonly dir: string) {}

  private file(name: string): string {
    return join(this.dir, encodeURIComponent(normalizeName(name)) + '.json');
  }

  /** The image `name` points at; ErrNotFound names what to do when there is none. */
  async get(name: string): Promise<TaggedImage> {
    try {
      return JSON.parse(await readFile(this.file(name), 'utf8')) as TaggedImage;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      throw new ErrNotFound(`image ${JSON.stringify(name)} not found: build it first with buildcache build -t ${name}, or use FROM scratch`, { details: { id: name } });
    }
  }

  /** Points `image.name` at `image` (atomic replace). */
  async set(image: TaggedImage): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = this.file(image.name);
    await writeFile(file + '.tmp', JSON.stringify(image));
    await rename(file + '.tmp', file);
  }
}
