/**
 * buildx's spelling of cache locations: `type=registry,ref=R[,mode=max][,compression=zstd]` and
 * `type=local,dest=DIR` (export) / `type=local,src=DIR` (import), with an optional `tag`.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { BLOB_FORMATS, type BlobFormat } from '@buildcache/cache';

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

/**
 * A cache spec's fields as given, before they are checked: a flag's attributes, or a CacheTarget
 * from the daemon's wire ('' and absent are the same: unset).
 */
export interface CacheSpecFields {
  readonly type?: string | undefined;
  readonly location?: string | undefined;
  readonly tag?: string | undefined;
  readonly mode?: string | undefined;
  readonly compression?: string | undefined;
  readonly ignoreError?: boolean;
}

/**
 * Checks `fields` of a `--cache-to` (`to`) or `--cache-from` (`from`) spec and gives the spec; a bad
 * field is ErrInvalidArgument whose message starts with `what` (the flag and its value, the call and target).
 */
export function checkCacheSpec(fields: CacheSpecFields, direction: 'to' | 'from', what: string): CacheSpec {
  const bad = (why: string): never => {
    throw new ErrInvalidArgument(`${what}: ${why}`);
  };
  const { type, location, tag, compression } = fields;
  if (type !== 'registry' && type !== 'local') return bad(`type must be registry or local (got ${JSON.stringify(type ?? '')})`);
  if (!location) return bad(`type=${type} needs ${type === 'registry' ? 'ref' : direction === 'to' ? 'dest' : 'src'}=…`);
  const mode = fields.mode || 'min';
  if (mode !== 'min' && mode !== 'max') return bad(`mode must be min or max (got ${JSON.stringify(mode)})`);
  if (compression && !BLOB_FORMATS.includes(compression as BlobFormat)) return bad(`compression must be one of ${BLOB_FORMATS.join(', ')}`);
  return {
    type, location, mode, ignoreError: Boolean(fields.ignoreError),
    ...(tag ? { tag } : {}), ...(compression ? { compression: compression as BlobFormat } : {}),
  };
}

const ATTRIBUTES = new Set(['type', 'ref', 'dest', 'src', 'tag', 'mode', 'compression', 'ignore-error', 'oci-mediatypes', 'image-manifest']);

/** Parses `value` for `--cache-to` (`to`, needs `dest`) or `--cache-from` (`from`, needs `src`). */
export function parseCacheSpec(value: string, direction: 'to' | 'from'): CacheSpec {
  const what = `${direction === 'to' ? '--cache-to' : '--cache-from'} ${JSON.stringify(value)}`;
  const bad = (why: string): never => {
    throw new ErrInvalidArgument(`${what}: ${why}`);
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
  const location = attrs.get(type === 'registry' ? 'ref' : direction === 'to' ? 'dest' : 'src');
  const spec = checkCacheSpec(
    { type, location, tag: attrs.get('tag'), mode: attrs.get('mode'), compression: attrs.get('compression'), ignoreError: attrs.get('ignore-error') === 'true' },
    direction,
    what,
  );
  for (const key of attrs.keys()) if (!ATTRIBUTES.has(key)) bad(`unknown attribute ${key}`);
  return spec;
}
