/**
 * The LevelDB key layout of a metadata store, and validation of the names that go into it.
 *
 * Every key is a UTF-8 string made of a one-letter key space, a NUL separator and NUL-separated
 * parts. NUL is forbidden inside IDs, keys and index strings, so a key always splits back into
 * the parts it was made of, and NUL (the smallest byte) makes `a:b\0…` sort before `a:bc\0…`:
 *
 * | key                     | value                                         |
 * |-------------------------|-----------------------------------------------|
 * | `m\0format`             | format marker, JSON `{"format":…,"version":…}`   |
 * | `v\0<id>`               | the item's values, JSON `{"<key>":{"i"?:index,"v":value},…}` |
 * | `i\0<index>\0<id>`      | empty string (secondary index entry)             |
 * | `x\0<id>\0<key>`        | raw bytes (external value)                       |
 *
 * One document per item makes loading an item one point read, `all()` one entry per item,
 * and every commit of an item a single put (plus its index keys) in one batch.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** Separator between the parts of a key; may not occur in IDs, keys or index strings. */
export const SEP = '\u0000';
/** The character after SEP, used as an exclusive upper bound of a range. */
const SEP_NEXT = '\u0001';

/** Longest accepted ID, key or index string, in UTF-16 code units. */
export const MAX_NAME_LENGTH = 4096;

/** Key of the format marker. */
export const MARKER_KEY = `m${SEP}format`;
/** Name written into the format marker. */
export const FORMAT_NAME = 'buildcache-metadata';
/** Version of the key layout written by this code. */
export const FORMAT_VERSION = 1;

const VALUES = `v${SEP}`;
const INDEX = `i${SEP}`;
const EXTERNALS = `x${SEP}`;

/** A surrogate half without its partner: it would not survive UTF-8 encoding. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A `[gte, lt)` key range. */
export interface KeyRange {
  readonly gte: string;
  readonly lt: string;
}

/** Throws ErrInvalidArgument unless `name` can be part of a key. `what` names it in the message. */
export function validateName(what: 'ID' | 'key' | 'index', name: unknown): asserts name is string {
  if (typeof name !== 'string') {
    throw new ErrInvalidArgument(`metadata: ${what} must be a string, got ${typeof name}`);
  }
  if (name.length === 0) throw new ErrInvalidArgument(`metadata: ${what} must not be empty`);
  if (name.length > MAX_NAME_LENGTH) {
    throw new ErrInvalidArgument(`metadata: ${what} is ${name.length} characters long; the limit is ${MAX_NAME_LENGTH}`);
  }
  if (name.includes(SEP)) {
    throw new ErrInvalidArgument(`metadata: ${what} ${JSON.stringify(name)} contains a NUL character`, {
      details: { [what === 'ID' ? 'id' : 'key']: name },
    });
  }
  if (LONE_SURROGATE.test(name)) {
    throw new ErrInvalidArgument(`metadata: ${what} ${JSON.stringify(name)} contains a lone surrogate`, {
      details: { [what === 'ID' ? 'id' : 'key']: name },
    });
  }
}

/** Key of the values document of item `id`. */
export function valueKey(id: string): string {
  return VALUES + id;
}

/** Range of the values documents of every item. */
export const ALL_VALUES_RANGE: KeyRange = { gte: VALUES, lt: `v${SEP_NEXT}` };

/** The item ID of a values-document key; undefined when malformed. */
export function parseValueKey(dbKey: string): string | undefined {
  if (!dbKey.startsWith(VALUES) || dbKey.length === VALUES.length) return undefined;
  const id = dbKey.slice(VALUES.length);
  return id.includes(SEP) ? undefined : id;
}

/** Key of the index entry that makes item `id` findable under `index`. */
export function indexKey(index: string, id: string): string {
  return INDEX + index + SEP + id;
}

/** Range of the index entries for exactly `index`. */
export function exactIndexRange(index: string): KeyRange {
  return { gte: INDEX + index + SEP, lt: INDEX + index + SEP_NEXT };
}

/**
 * Where the index entries whose index string starts with `prefix` begin; they continue for as
 * long as the keys start with this same string.
 */
export function prefixIndexStart(prefix: string): string {
  return INDEX + prefix;
}

/**
 * A range that holds every index entry whose index string starts with `prefix` (and maybe a few
 * more, which callers skip), so that a search reads no key past them.
 */
export function prefixIndexRange(prefix: string): KeyRange {
  const start = prefixIndexStart(prefix);
  const last = start.charCodeAt(start.length - 1);
  // Bumping a last character below the surrogates bounds exactly the keys that start with the prefix (in UTF-8 order too).
  const lt = last < 0xd7ff ? start.slice(0, -1) + String.fromCharCode(last + 1) : `i${SEP_NEXT}`;
  return { gte: start, lt };
}

/** Splits an index key into index string and item ID; undefined when malformed. */
export function parseIndexKey(dbKey: string): { index: string; id: string } | undefined {
  const pair = splitPair(dbKey, INDEX);
  return pair === undefined ? undefined : { index: pair.id, id: pair.key };
}

/** Key of external value `key` of item `id`. */
export function externalKey(id: string, key: string): string {
  return EXTERNALS + id + SEP + key;
}

/** Range of every external key of item `id`. */
export function itemExternalRange(id: string): KeyRange {
  return { gte: EXTERNALS + id + SEP, lt: EXTERNALS + id + SEP_NEXT };
}

/** Splits `<space>\0<a>\0<b>` into its two non-empty, NUL-free parts. */
function splitPair(dbKey: string, space: string): { id: string; key: string } | undefined {
  if (!dbKey.startsWith(space)) return undefined;
  const cut = dbKey.indexOf(SEP, space.length);
  if (cut <= space.length || cut === dbKey.length - 1) return undefined;
  const id = dbKey.slice(space.length, cut);
  const key = dbKey.slice(cut + 1);
  if (key.includes(SEP)) return undefined;
  return { id, key };
}
