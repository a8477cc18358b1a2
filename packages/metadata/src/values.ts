/**
 * JSON values as the store keeps them: checked, canonically encoded with
 * fast-json-stable-stringify, decoded back and frozen, so that what a caller reads before a
 * commit is exactly what it will read after a reopen; and the per-item document they are
 * stored in.
 */
import stringify from 'fast-json-stable-stringify';
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** Any value that survives a JSON round trip. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * One stored value as kept in memory: the object JSON.parse made for it in the document
 * (`{"i"?: index, "v": value}`), reused as is, plus its encoding once a commit needed it.
 */
export interface Entry {
  /** The value, frozen. */
  readonly v: JsonValue;
  /** The index string it is findable under. */
  readonly i?: string;
  /** Canonical encoding of `v`, cached. */
  e?: string;
}

/** Why a stored values document (or one of its entries) was not used. */
export interface DocumentProblem {
  readonly key?: string;
  readonly reason: string;
}

/** Encodes `value` canonically; throws ErrInvalidArgument for values JSON cannot hold. */
export function encodeValue(key: string, value: unknown): string {
  if (value === undefined) {
    throw new ErrInvalidArgument(`metadata: value of ${JSON.stringify(key)} is undefined; use delete() to remove a key`, {
      details: { key },
    });
  }
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new ErrInvalidArgument(`metadata: value of ${JSON.stringify(key)} is ${value}, which JSON cannot hold`, {
      details: { key },
    });
  }
  let text: string | undefined;
  try {
    text = stringify(value);
  } catch (err) {
    throw new ErrInvalidArgument(`metadata: value of ${JSON.stringify(key)} is not JSON-encodable: ${(err as Error).message}`, {
      cause: err,
      details: { key },
    });
  }
  if (typeof text !== 'string') {
    throw new ErrInvalidArgument(`metadata: value of ${JSON.stringify(key)} (${typeof value}) is not JSON-encodable`, {
      details: { key },
    });
  }
  return text;
}

/** Builds an entry from an encoded value, decoding it back so memory matches disk. */
export function entryFromEncoded(encoded: string, index: string | undefined): Entry {
  const v = deepFreeze(JSON.parse(encoded) as JsonValue);
  return index === undefined ? { v, e: encoded } : { v, i: index, e: encoded };
}

/** The canonical text of a values document (keys sorted, as fast-json-stable-stringify would). */
export function encodeDocument(entries: Map<string, Entry>): string {
  const keys = [...entries.keys()].sort();
  let out = '{';
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k]!;
    const entry = entries.get(key)!;
    entry.e ??= canonical(entry.v);
    const index = entry.i === undefined ? '' : `"i":${JSON.stringify(entry.i)},`;
    out += `${k === 0 ? '' : ','}${JSON.stringify(key)}:{${index}"v":${entry.e}}`;
  }
  return `${out}}`;
}

/** The canonical text of a decoded value (a scalar's is JSON's own: no keys to sort). */
function canonical(v: JsonValue): string {
  return v !== null && typeof v === 'object' ? stringify(v) : JSON.stringify(v);
}

/**
 * Parses a stored values document. Entries that are not `{"v": …, "i"?: string}` under a
 * usable key are left out and reported; a document that is not a JSON object gives undefined.
 */
export function parseDocument(text: string, problems: DocumentProblem[]): Map<string, Entry> | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    problems.push({ reason: `not JSON: ${(err as Error).message}` });
    return undefined;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ reason: 'not a JSON object' });
    return undefined;
  }
  const entries = new Map<string, Entry>();
  const doc = raw as Record<string, unknown>;
  // Key by key (Object.entries would build a pair array for every value of every item read).
  for (const key of Object.keys(doc)) {
    const env = doc[key];
    if (key === '' || key.includes('\u0000')) {
      problems.push({ key, reason: 'unusable key' });
      continue;
    }
    if (env === null || typeof env !== 'object' || Array.isArray(env) || !('v' in env)) {
      problems.push({ key, reason: 'entry is not {"v": …}' });
      continue;
    }
    const entry = env as { i?: unknown; v: JsonValue; e?: unknown };
    const { i } = entry;
    if (i !== undefined && (typeof i !== 'string' || i === '' || i.includes('\u0000'))) {
      problems.push({ key, reason: 'index is not a usable string' });
      continue;
    }
    if (entry.e !== undefined) delete entry.e;
    deepFreeze(entry.v);
    entries.set(key, entry as Entry);
  }
  return entries;
}

/** Freezes objects and arrays all the way down, so cached values cannot be changed behind the store's back. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
