/**
 * Importing a remote cache: the manifest (BuildKit's image-manifest or index layout) and its cache
 * description become result keys whose results are remote blob chains. Nothing but the manifest and
 * the description is downloaded; a hit's layers are fetched only when its record is mounted. A cache
 * that cannot be read or is malformed is ignored with a warning, never an error.
 */
import pLimit from 'p-limit';
import { pino, type Logger } from 'pino';
import type { DescHandler, DescHandlers } from '@buildcache/cache';
import { LABEL_UNCOMPRESSED, type Descriptor } from '@buildcache/snapshot';
import { CacheConfigError, MAX_CONFIG_BYTES, MEDIA_CACHE_CONFIG, parseConfig } from './config.js';
import type { CacheStore } from './stores.js';

/** A remote cache read into memory: result keys and the descriptors of their layer chains. */
export interface ImportedCache {
  /** Where it came from (for messages). */
  readonly name: string;
  /** What was wrong with it, if anything (each entry names the store). */
  readonly warnings: readonly string[];
  /** Result keys found. */
  readonly size: number;
  /** The layer chain (base first, each with its diffID annotation) holding `key`'s result, if the cache has it. */
  lookup(key: string): readonly Descriptor[] | undefined;
  /** Providers of the cache's blobs (pass as `descHandlers` to `getByBlob`). */
  readonly handlers: DescHandlers;
}

/** Options of `importCache`. */
export interface ImportOptions {
  readonly logger?: Logger;
  /** Check with HEAD requests that every blob a result needs is in the store (default true). */
  readonly checkBlobs?: boolean;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

interface TopLevel {
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

/** The cache description's descriptor and the layer descriptors, from either layout. */
function describeManifest(bytes: Buffer): { config: Descriptor; layers: Map<string, Descriptor> } {
  let top: TopLevel;
  try {
    top = JSON.parse(bytes.toString('utf8')) as TopLevel;
  } catch {
    throw new CacheConfigError('the manifest is not JSON');
  }
  if (typeof top !== 'object' || top === null) throw new CacheConfigError('the manifest is not a JSON object');
  const isDesc = (d: unknown): d is Descriptor =>
    typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string' && DIGEST.test((d as Descriptor).digest) && Number.isSafeInteger((d as Descriptor).size);
  let config: Descriptor | undefined;
  let layerList: unknown[] = [];
  if (Array.isArray(top.manifests)) {
    config = top.manifests.find((d) => isDesc(d) && d.mediaType === MEDIA_CACHE_CONFIG);
    layerList = top.manifests.filter((d) => d !== config);
  } else if (top.config !== undefined) {
    if (isDesc(top.config) && top.config.mediaType === MEDIA_CACHE_CONFIG) config = top.config;
    layerList = Array.isArray(top.layers) ? top.layers : [];
  }
  if (!config) throw new CacheConfigError(`the manifest names no ${MEDIA_CACHE_CONFIG} blob (not a cache export?)`);
  if (config.size > MAX_CONFIG_BYTES) throw new CacheConfigError(`the cache description is ${config.size} bytes, more than the ${MAX_CONFIG_BYTES} read`);
  const layers = new Map<string, Descriptor>();
  for (const l of layerList) if (isDesc(l)) layers.set(l.digest, l);
  return { config, layers };
}

function empty(name: string, warnings: string[], handlers: DescHandlers = new Map()): ImportedCache {
  return { name, warnings, size: 0, lookup: () => undefined, handlers };
}

/** Reads the cache kept in `store`. Never throws for a missing, unreachable or malformed cache: it comes back empty, with warnings. */
export async function importCache(store: CacheStore, options: ImportOptions = {}): Promise<ImportedCache> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const warnings: string[] = [];
  const warn = (what: string): void => {
    const message = `cache from ${store.name}: ${what}`;
    warnings.push(message);
    logger.warn({ store: store.name }, message);
  };
  let config: Descriptor;
  let layers: Map<string, Descriptor>;
  let entries;
  try {
    ({ config, layers } = describeManifest(await store.getManifest()));
    entries = parseConfig(await store.readBlob(config));
  } catch (err) {
    warn(`${err instanceof CacheConfigError ? '' : 'cannot read it: '}${(err as Error).message}; building without it`);
    return empty(store.name, warnings);
  }
  const handlers = new Map<string, DescHandler>();
  const usable = entries.filter((e) => {
    const missing = e.blobs.find((b) => !layers.has(b));
    if (missing) {
      warn(`result ${e.key} needs layer ${missing}, which the manifest does not list; skipped`);
      return false;
    }
    const bad = e.blobs.find((b) => !DIGEST.test(layers.get(b)!.annotations?.[LABEL_UNCOMPRESSED] ?? ''));
    if (bad) {
      warn(`layer ${bad} has no diffID annotation (${LABEL_UNCOMPRESSED}); the results on it are skipped`);
      return false;
    }
    return true;
  });
  const absent = new Set<string>();
  if (options.checkBlobs ?? true) {
    const limit = pLimit(8);
    const needed = [...new Set(usable.flatMap((e) => e.blobs))];
    await Promise.all(
      needed.map((b) =>
        limit(async () => {
          const there = await store.hasBlob(layers.get(b)!).catch(() => false);
          if (!there) absent.add(b);
        }),
      ),
    );
    for (const b of absent) warn(`layer ${b} is not in the store; the results on it are skipped (their steps run)`);
  }
  const results = new Map<string, Descriptor[]>();
  for (const e of usable) {
    if (e.blobs.some((b) => absent.has(b))) continue;
    results.set(e.key, e.blobs.map((b) => layers.get(b)!));
  }
  for (const d of layers.values()) {
    handlers.set(d.digest, { provider: { fetch: (desc) => store.fetch(desc) }, ...(d.annotations ? { annotations: d.annotations } : {}) });
  }
  logger.info({ store: store.name, results: results.size, config: config.digest }, 'cache imported');
  return { name: store.name, warnings, size: results.size, lookup: (key) => results.get(key), handlers };
}

/** Several imported caches looked up as one (the first that has a key wins; all their blobs are reachable). */
export function mergeImports(caches: readonly ImportedCache[]): ImportedCache {
  const handlers = new Map<string, DescHandler>();
  for (const c of caches) for (const [d, h] of c.handlers) if (!handlers.has(d)) handlers.set(d, h);
  return {
    name: caches.map((c) => c.name).join(', '),
    warnings: caches.flatMap((c) => c.warnings),
    size: caches.reduce((n, c) => n + c.size, 0),
    lookup: (key) => {
      for (const c of caches) {
        const hit = c.lookup(key);
        if (hit) return hit;
      }
      return undefined;
    },
    handlers,
  };
}
