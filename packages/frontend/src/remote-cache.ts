/**
 * The remote cache of a build (`--cache-from`, `--cache-to`): importing caches before the steps are
 * looked up, turning a remote hit into a lazy record chain (nothing fetched until it is mounted), and
 * exporting the build's keys and layers afterwards.
 */
import type { BlobFormat, CacheManager, ImmutableRef } from '@buildcache/cache';
import { exportCache, importCache, mergeImports, type CacheStore, type ExportedCache, type ImportedCache } from '@buildcache/remotecache';
import type { ContentStore } from '@buildcache/snapshot';
import type { Logger } from 'pino';
import type { Progress } from './progress.js';

/** Where to export a build's cache, and how. */
export interface CacheExport {
  readonly store: CacheStore;
  /** `min` (default): the final result's layers; `max`: every step's. */
  readonly mode?: 'min' | 'max';
  readonly compression?: BlobFormat;
  /** An export failure becomes a warning instead of failing the build. */
  readonly ignoreError?: boolean;
}

/** A step as exported: its key parts and, when this machine has it, its result record's ID. */
export interface KeyedStep {
  readonly opKey: string;
  readonly inputs: readonly string[];
  readonly record?: string;
}

/** Imports every store (each shown as a progress line); unreadable ones come back empty with a warning. */
export async function importCaches(stores: readonly CacheStore[], progress: Progress, logger: Logger | undefined): Promise<ImportedCache> {
  const caches: ImportedCache[] = [];
  for (const store of stores) {
    const v = progress.vertex(`importing cache manifest from ${store.name}`);
    const imported = await importCache(store, logger ? { logger } : {});
    for (const w of imported.warnings) v.log(`WARNING: ${w}`);
    v.done();
    caches.push(imported);
  }
  return mergeImports(caches);
}

/** A lazy record chain for `key` from the imported caches, or undefined when none has it. */
export async function remoteResult(cache: CacheManager, imported: ImportedCache, key: string, description: string): Promise<ImmutableRef | undefined> {
  const chain = imported.lookup(key);
  if (!chain) return undefined;
  let parent: ImmutableRef | undefined;
  try {
    for (const [i, desc] of chain.entries()) {
      const ref: ImmutableRef = await cache.getByBlob(desc, parent, {
        descHandlers: imported.handlers,
        ...(i === chain.length - 1 ? { description } : {}),
      });
      await parent?.release();
      parent = ref;
    }
  } catch (err) {
    await parent?.release();
    throw err;
  }
  return parent;
}

/** Exports the build's steps to every target; an `ignoreError` target's failure is a warning. */
export async function exportCaches(
  cache: CacheManager,
  content: ContentStore,
  steps: readonly KeyedStep[],
  targets: readonly CacheExport[],
  progress: Progress,
  warnings: string[],
  logger: Logger | undefined,
): Promise<ExportedCache[]> {
  if (targets.length === 0) return [];
  const refs: (ImmutableRef | undefined)[] = [];
  const exported: ExportedCache[] = [];
  try {
    for (const s of steps) refs.push(s.record ? await cache.get(s.record, { noUpdateLastUsed: true }) : undefined);
    const results = steps.map((s, i) => ({ opKey: s.opKey, inputs: s.inputs, ...(refs[i] ? { ref: refs[i] } : {}) }));
    for (const t of targets) {
      const v = progress.vertex(`exporting cache to ${t.store.name}`);
      try {
        const e = await exportCache(t.store, content, results, {
          mode: t.mode ?? 'min',
          ...(t.compression ? { compression: t.compression } : {}),
          ...(logger ? { logger } : {}),
        });
        v.log(`${e.layers.length} layers (${e.uploaded} uploaded), cache manifest ${e.manifest.digest}`);
        v.done();
        exported.push(e);
      } catch (err) {
        v.error((err as Error).message);
        if (!t.ignoreError) throw err;
        warnings.push(`cache export to ${t.store.name} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    for (const r of refs) await r?.release();
  }
  return exported;
}
