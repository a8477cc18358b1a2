/**
 * buildx's spelling of cache locations: `type=registry,ref=R[,mode=max][,compression=zstd]` and
 * `type=local,dest=DIR` (export) / `type=local,src=DIR` (import), with an optional `tag`.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import type { BlobFormat } from '@buildcache/cache';
import type { RegistryClient } from '@buildcache/registry';
import { LocalStore, RegistryStore, type CacheStore } from './stores.js';

/** A parsed `--cache-to` / `--cache-from` value. */
export interface CacheSpec {
  readonly type: 'registry' | 'local';
  /** Registry reference (registry) or layout directory (local). */
  readonly location: string;
  readonly tag?: string;
  readonly mode: 'min' | 'max';
  readonly compression?: BlobFormat;
  /** `ignore-error=true`: an export failure is a warning, not a failed build. */
  readonly ignoreError: boolean;
}

/** The blob formats a cache export may use (`compression=`). */
export const CACHE_COMPRESSIONS: readonly BlobFormat[] = ['gzip', 'zstd', 'uncompressed', 'estargz'];

/** Parses `value` for `--cache-to` (`to`, needs `dest`) or `--cache-from` (`from`, needs `src`). */
export function parseCacheSpec(value: string, direction: 'to' | 'from'): CacheSpec {
  const flag = direction === 'to' ? '--cache-to' : '--cache-from';
  const bad = (why: string): never => {
    throw new ErrInvalidArgument(`${flag} ${JSON.stringify(value)}: ${why}`);
  };
  const attrs = new Map<string, string>();
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) bad(`expected KEY=VALUE pairs separated by commas, got ${JSON.stringify(part)}`);
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (v === '') bad(`${key} has an empty value`);
    attrs.set(key, v);
  }
  const type = attrs.get('type') ?? (attrs.has('ref') ? 'registry' : undefined);
  if (type !== 'registry' && type !== 'local') bad(`type must be registry or local (got ${JSON.stringify(type ?? '')})`);
  const locKey = type === 'registry' ? 'ref' : direction === 'to' ? 'dest' : 'src';
  const location = attrs.get(locKey) ?? bad(`type=${type} needs ${locKey}=…`);
  const mode = attrs.get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max') bad(`mode must be min or max (got ${JSON.stringify(mode)})`);
  const compression = attrs.get('compression') as BlobFormat | undefined;
  if (compression !== undefined && !CACHE_COMPRESSIONS.includes(compression)) bad(`compression must be one of ${CACHE_COMPRESSIONS.join(', ')}`);
  const known = new Set(['type', 'ref', 'dest', 'src', 'tag', 'mode', 'compression', 'ignore-error', 'oci-mediatypes', 'image-manifest']);
  for (const k of attrs.keys()) if (!known.has(k)) bad(`unknown attribute ${k}`);
  return {
    type: type as 'registry' | 'local',
    location,
    mode: mode as 'min' | 'max',
    ignoreError: attrs.get('ignore-error') === 'true',
    ...(attrs.has('tag') ? { tag: attrs.get('tag')! } : {}),
    ...(compression ? { compression } : {}),
  };
}

/** The store a spec names (a registry spec needs `client`). */
export function storeOf(spec: CacheSpec, client: RegistryClient | undefined): CacheStore {
  if (spec.type === 'local') return new LocalStore(spec.location, spec.tag);
  if (!client) throw new ErrInvalidArgument(`cache ${spec.location}: a registry client is needed for type=registry`);
  return new RegistryStore(client, spec.location);
}
