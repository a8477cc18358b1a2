/**
 * Earlier versions kept the names of built images in a table of their own (`<frontend root>/images`,
 * one JSON file per name: manifest digest, runtime config, top record). Names now live in the image
 * store only; this moves each old name there once and removes the table.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CacheManager, ImmutableRef } from '@buildcache/cache';
import { ErrNotFound } from '@buildcache/errdefs';
import type { ImageStore } from '@buildcache/images';
import { PLATFORM, type ImageConfig } from './dockerfile/plan.js';

/** One name of the old table. */
interface OldTag {
  readonly name: string;
  readonly config: ImageConfig;
  readonly record?: string;
}

/** Records every name of the old table `dir` in `images` (a name whose layers were pruned is dropped), then removes `dir`. */
export async function migrateTags(dir: string, cache: CacheManager, images: ImageStore, logger?: Logger): Promise<void> {
  const files = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!files) return;
  for (const file of files.filter((f) => f.endsWith('.json'))) {
    const tag = JSON.parse(await readFile(join(dir, file), 'utf8')) as OldTag;
    let top: ImmutableRef | undefined;
    try {
      top = tag.record === undefined ? undefined : await cache.get(tag.record);
      await images.add(top, { architecture: PLATFORM.architecture, os: PLATFORM.os, config: tag.config }, [tag.name]);
      logger?.info({ name: tag.name }, 'moved a built image name into the image store');
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
      logger?.warn({ name: tag.name, record: tag.record }, 'dropped the name of a built image whose layers were pruned');
    } finally {
      await top?.release();
    }
    await rm(join(dir, file), { force: true });
  }
  await rm(dir, { recursive: true, force: true });
}
