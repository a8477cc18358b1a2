/** A generic adaptor over plain objects, for callers and tests that have no adaptor of their own. */
import type { Adaptor } from './match.js';

/**
 * Sees a plain object (or `Map`) through filter field paths:
 * - `['name']` → `obj.name`, `['labels', 'k']` → `obj.labels.k` (own properties and `Map` keys only);
 * - at each object, a path that does not descend also tries its remaining components joined by `.`
 *   as one key, as containerd does for labels: `labels.a.b` and `labels."a.b"` both find key `a.b`;
 * - strings are themselves (`''` is present); numbers and bigints are `String(n)`; a `Date` is its
 *   ISO string; `true` is `'true'` and `false` is absent (BuildKit's presence-only flags: `mutable`
 *   matches, `mutable!=true` matches the others); an array is its present elements joined by `;`
 *   (BuildKit's `parents`), absent when empty;
 * - `undefined`, `null`, objects at the end of a path and anything else are absent.
 */
export function adaptObject(obj: unknown): Adaptor {
  return (fieldpath) => (fieldpath.length === 0 ? undefined : lookup(obj, fieldpath));
}

function lookup(value: unknown, path: readonly string[]): string | undefined {
  if (path.length === 0) return scalar(value);
  const [head, ...rest] = path as [string, ...string[]];
  const child = childOf(value, head);
  if (child.found) {
    const found = lookup(child.value, rest);
    if (found !== undefined || rest.length === 0) return found;
  }
  if (rest.length === 0) return undefined;
  const joined = childOf(value, path.join('.'));
  return joined.found ? scalar(joined.value) : undefined;
}

function childOf(value: unknown, key: string): { found: boolean; value?: unknown } {
  if (value instanceof Map) return value.has(key) ? { found: true, value: value.get(key) } : { found: false };
  if (isRecord(value) && Object.hasOwn(value, key)) return { found: true, value: value[key] };
  return { found: false };
}

function scalar(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 'true' : undefined;
    default:
      break;
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
  if (Array.isArray(value)) {
    const parts = value.map(scalar).filter((s): s is string => s !== undefined);
    return parts.length === 0 ? undefined : parts.join(';');
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
