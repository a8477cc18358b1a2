/**
 * The cache description BuildKit pushes next to its layer blobs (`application/vnd.buildkit.cacheconfig.v0`):
 * `layers` (a blob and the index of its parent layer) and `records` (a cache-key digest, the records it
 * links to as inputs, and the top layers of its results). This module writes it deterministically and
 * reads it back into result keys, refusing malformed graphs (bad indexes, loops, empty input lists).
 */
import { resultKey } from '@buildcache/cache';

/** Media type of the cache description blob. */
export const MEDIA_CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';
/** Largest manifest or cache description read (BuildKit's limit: 1 MiB). */
export const MAX_CONFIG_BYTES = 1 << 20;

/** One layer blob of the description; `parent` is an index into `layers`, -1 for none. */
export interface ConfigLayer {
  readonly blob: string;
  readonly parent: number;
}

/** One result of a record: the index of its top layer (parents follow from `layers`). */
export interface ConfigResult {
  readonly layer: number;
  readonly createdAt: string;
}

/** One input alternative of a record: the record it links to (`selector` is BuildKit's, unused here). */
export interface ConfigLink {
  readonly selector: string;
  readonly link: number;
}

/** One cache-key record of the description. */
export interface ConfigRecord {
  readonly digest: string;
  readonly layers?: readonly ConfigResult[];
  readonly inputs?: readonly (readonly ConfigLink[])[];
}

/** The cache description as JSON. */
export interface CacheConfig {
  readonly layers: readonly ConfigLayer[];
  readonly records: readonly ConfigRecord[];
}

/** A result found in a description: a result key and the blob chain (base first) holding its data. */
export interface ConfigEntry {
  readonly key: string;
  readonly blobs: readonly string[];
  readonly createdAt: string;
}

/** Why a description was refused; the importer turns it into a warning. */
export class CacheConfigError extends Error {}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ZERO_TIME = '0001-01-01T00:00:00Z';

function fail(why: string): never {
  throw new CacheConfigError(why);
}

function isIndex(n: unknown, length: number): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) < length;
}

/** Checks the shape of parsed JSON (every index in range, digests well formed) and returns it typed. */
function checkShape(json: unknown): CacheConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('the cache description is not a JSON object');
  const { layers = [], records = [] } = json as { layers?: unknown; records?: unknown };
  if (!Array.isArray(layers) || !Array.isArray(records)) fail('"layers" and "records" must be arrays');
  layers.forEach((l: unknown, i) => {
    const { blob, parent = 0 } = (l ?? {}) as { blob?: unknown; parent?: unknown };
    if (typeof blob !== 'string' || !DIGEST.test(blob)) fail(`layer ${i}: "blob" is not a sha256 digest`);
    if (parent !== -1 && !isIndex(parent, layers.length)) fail(`layer ${i}: parent ${JSON.stringify(parent)} is not a layer index`);
  });
  records.forEach((r: unknown, i) => {
    const { digest, layers: results = [], inputs = [] } = (r ?? {}) as { digest?: unknown; layers?: unknown; inputs?: unknown };
    if (typeof digest !== 'string' || !DIGEST.test(digest)) fail(`record ${i}: "digest" is not a sha256 digest`);
    if (!Array.isArray(results) || !results.every((x: { layer?: unknown }) => isIndex(x?.layer, layers.length))) {
      fail(`record ${i}: a result names a layer that is not in "layers"`);
    }
    if (!Array.isArray(inputs)) fail(`record ${i}: "inputs" is not an array`);
    inputs.forEach((alts: unknown, j) => {
      if (!Array.isArray(alts) || alts.length === 0) fail(`record ${i}: input ${j} has no link`);
      for (const a of alts as { link?: unknown }[]) if (!isIndex(a?.link, records.length)) fail(`record ${i}: input ${j} links to a record that is not there`);
    });
  });
  return {
    layers: layers.map((l: { blob: string; parent?: number }) => ({ blob: l.blob, parent: l.parent ?? 0 })),
    records: records as ConfigRecord[],
  };
}

/** The blob chain (base first) ending at layer `top`; a loop in the parent links is refused. */
function chainOf(cfg: CacheConfig, top: number): string[] {
  const blobs: string[] = [];
  for (let i = top, steps = 0; i !== -1; i = cfg.layers[i]!.parent, steps++) {
    if (steps > cfg.layers.length) fail(`layer ${top}: its parent links loop`);
    blobs.push(cfg.layers[i]!.blob);
  }
  return blobs.reverse();
}

/**
 * Reads a cache description: every record's result key (a record without inputs is keyed by its
 * digest; one with inputs by `resultKey(digest, keys of the first record each input links to)`) and
 * the blob chain of its newest result. Throws CacheConfigError for malformed JSON or graphs.
 */
export function parseConfig(bytes: Uint8Array): ConfigEntry[] {
  if (bytes.length > MAX_CONFIG_BYTES) fail(`the cache description is ${bytes.length} bytes, more than the ${MAX_CONFIG_BYTES} read`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    fail('the cache description is not JSON');
  }
  const cfg = checkShape(json);
  const keys = new Map<number, string>();
  const visiting = new Set<number>();
  const keyOf = (i: number): string => {
    const known = keys.get(i);
    if (known) return known;
    if (visiting.has(i)) fail(`record ${i}: its input links loop`);
    visiting.add(i);
    const r = cfg.records[i]!;
    const inputs = r.inputs ?? [];
    let key: string;
    try {
      key = inputs.length === 0 ? r.digest : resultKey(r.digest, inputs.map((alts) => keyOf(alts[0]!.link)));
    } catch (err) {
      if (err instanceof CacheConfigError) throw err;
      fail(`record ${i}: ${(err as Error).message}`);
    }
    visiting.delete(i);
    keys.set(i, key);
    return key;
  };
  const entries: ConfigEntry[] = [];
  cfg.records.forEach((r, i) => {
    const key = keyOf(i);
    const newest = [...(r.layers ?? [])].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))[0];
    if (newest) entries.push({ key, blobs: chainOf(cfg, newest.layer), createdAt: newest.createdAt ?? ZERO_TIME });
  });
  return entries;
}

/** A step of a build as the exporter sees it: its op key, its inputs and, when exported, its result's blob chain. */
export interface ExportStep {
  readonly opKey: string;
  readonly inputs: readonly string[];
  /** Layer blob digests, base first; absent when only the key chain is exported (mode=min). */
  readonly blobs?: readonly string[];
  readonly createdAt?: string;
}

/**
 * Writes the description of `steps` (each input is another step's result key or a root digest such
 * as a content checksum), as the same bytes for the same graph: layers in parent-first order by
 * blob, records sorted by digest, indexes remapped.
 */
export function marshalConfig(steps: readonly ExportStep[]): Buffer {
  // Layers: one per distinct (chain prefix); keyed by the joined chain so shared prefixes are shared.
  const layerIds = new Map<string, { blob: string; parentChain: string | undefined }>();
  for (const s of steps) {
    s.blobs?.forEach((blob, i) => {
      const chain = s.blobs!.slice(0, i + 1).join(',');
      if (!layerIds.has(chain)) layerIds.set(chain, { blob, parentChain: i === 0 ? undefined : s.blobs!.slice(0, i).join(',') });
    });
  }
  const layerOrder = [...layerIds.keys()].sort((a, b) => a.split(',').length - b.split(',').length || (a < b ? -1 : a > b ? 1 : 0));
  const layerIndex = new Map(layerOrder.map((c, i) => [c, i]));
  const layers = layerOrder.map((c) => {
    const l = layerIds.get(c)!;
    return { blob: l.blob, parent: l.parentChain === undefined ? -1 : layerIndex.get(l.parentChain)! };
  });

  // Records: each step under its op key (or, without inputs, its result key); each input not
  // produced by a step becomes a root record under its own digest.
  interface Node { digest: string; inputs: string[]; result?: { chain: string; createdAt: string } }
  const nodes = new Map<string, Node>();
  for (const s of steps) {
    const key = resultKey(s.opKey, s.inputs);
    const node: Node = nodes.get(key) ?? { digest: s.inputs.length === 0 ? key : s.opKey, inputs: [...s.inputs] };
    if (s.blobs?.length) node.result = { chain: s.blobs.join(','), createdAt: s.createdAt ?? ZERO_TIME };
    nodes.set(key, node);
  }
  for (const s of steps) for (const input of s.inputs) if (!nodes.has(input)) nodes.set(input, { digest: input, inputs: [] });
  const order = [...nodes.keys()].sort((a, b) => {
    const x = nodes.get(a)!;
    const y = nodes.get(b)!;
    return x.digest < y.digest ? -1 : x.digest > y.digest ? 1 : x.inputs.join() < y.inputs.join() ? -1 : 1;
  });
  const recordIndex = new Map(order.map((k, i) => [k, i]));
  const records = order.map((k) => {
    const n = nodes.get(k)!;
    return {
      digest: n.digest,
      ...(n.result ? { layers: [{ layer: layerIndex.get(n.result.chain)!, createdAt: n.result.createdAt }] } : {}),
      ...(n.inputs.length ? { inputs: n.inputs.map((i) => [{ selector: '', link: recordIndex.get(i)! }]) } : {}),
    };
  });
  return Buffer.from(JSON.stringify({ layers, records }));
}
