/**
 * Entry names and where they may land: normalisation of tar names to relative component lists,
 * rejection of absolute and `..` names, and whiteout classification. The filesystem side (parents
 * that must not be symlinks) is in `safe-tree.ts`.
 */
import { ErrUnsafeEntry } from '@buildcache/errdefs';

/** OCI whiteout prefix. */
export const WHITEOUT_PREFIX = '.wh.';
/** OCI opaque-directory marker. */
export const WHITEOUT_OPAQUE = '.wh..wh..opq';
/** Prefix of AUFS metadata entries, which are skipped. */
export const WHITEOUT_META_PREFIX = '.wh..wh.';

/** An ErrUnsafeEntry naming the entry. */
export function unsafe(message: string, entry: string): ErrUnsafeEntry {
  return new ErrUnsafeEntry(`unsafe layer entry ${JSON.stringify(entry)}: ${message}`, { details: { entry } });
}

/**
 * The components of a tar name relative to the layer root. A leading `./`, repeated slashes and
 * `.` components are harmless and dropped; an absolute name or any `..` component is refused with
 * ErrUnsafeEntry (even one that would stay inside: layers have no reason to contain them).
 * Returns [] for the root itself.
 */
export function entryComponents(name: string, what = 'path'): string[] {
  if (name.startsWith('/')) throw unsafe(`absolute ${what}`, name);
  if (name.includes('\0')) throw unsafe(`NUL byte in ${what}`, name);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw unsafe(`${what} contains '..'`, name);
    parts.push(c);
  }
  return parts;
}

/** What a layer entry's name means. */
export type NameKind =
  | { kind: 'root' }
  | { kind: 'path'; parts: string[] }
  | { kind: 'whiteout'; parts: string[] }
  | { kind: 'opaque'; dir: string[] }
  | { kind: 'skip' };

/** Classifies a tar name: plain path, whiteout of `parts`, opaque marker of `dir`, AUFS meta to skip. */
export function classifyName(name: string): NameKind {
  const parts = entryComponents(name);
  const base = parts[parts.length - 1];
  if (base === undefined) return { kind: 'root' };
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'path', parts };
  const dir = parts.slice(0, -1);
  if (base === WHITEOUT_OPAQUE) return { kind: 'opaque', dir };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'skip' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') throw unsafe('whiteout of an invalid name', name);
  return { kind: 'whiteout', parts: [...dir, target] };
}

/** Joins components into a relative path (`''` for the root). */
export function relPath(parts: readonly string[]): string {
  return parts.join('/');
}

/** True when `rel` is `prefix` or lies under it. */
export function isUnder(rel: string, prefix: string): boolean {
  return prefix === '' || rel === prefix || rel.startsWith(prefix + '/');
}
