/**
 * The parsed form of a filter and how it matches: a list of alternatives (OR), each a list of
 * selectors (AND). Matching semantics follow containerd's filters package.
 */

/**
 * Looks up a field for matching: `['labels', 'a.b']` → the value of label `a.b`. Returns
 * `undefined` when the field is absent; any string (even `''`) means the field is present.
 */
export type Adaptor = (fieldpath: readonly string[]) => string | undefined;

/** How a selector compares: presence only, equal, not equal, regular-expression match. */
export type Operator = 'present' | '==' | '!=' | '~=';

/** One `fieldpath[<op><value>]` term. */
export interface Selector {
  /** Field path components, quotes removed: `labels."a.b"` → `['labels', 'a.b']`. */
  readonly fieldpath: readonly string[];
  readonly operator: Operator;
  /** The unquoted value; `''` for `present`. */
  readonly value: string;
  /** The compiled `value` of a `~=` selector. */
  readonly regexp?: RegExp;
}

/** A compiled filter. Build one with `parseFilters`. */
export interface Filter {
  /** The alternatives (one per input string); the filter matches when any of them does. */
  readonly alternatives: readonly (readonly Selector[])[];
  /** True when the object seen through `adaptor` satisfies the filter. */
  match(adaptor: Adaptor): boolean;
}

/**
 * Matches one selector, as containerd does:
 * - `present`: the field exists;
 * - `==`: the field exists and equals the value;
 * - `!=`: the field's value differs — an absent field counts as `''`, so it matches any non-empty value;
 * - `~=`: the regexp finds a match in the field's value — an absent field is searched as `''`.
 */
export function matchSelector(selector: Selector, adaptor: Adaptor): boolean {
  const value = adaptor(selector.fieldpath);
  switch (selector.operator) {
    case 'present':
      return value !== undefined;
    case '==':
      return value !== undefined && value === selector.value;
    case '!=':
      return (value ?? '') !== selector.value;
    case '~=':
      return selector.regexp !== undefined && selector.regexp.test(value ?? '');
  }
}

class AlternativesFilter implements Filter {
  constructor(readonly alternatives: readonly (readonly Selector[])[]) {}

  match(adaptor: Adaptor): boolean {
    return this.alternatives.some((all) => all.every((selector) => matchSelector(selector, adaptor)));
  }

  toString(): string {
    return this.alternatives.map((all) => all.map(formatSelector).join(',')).join(' | ');
  }
}

/**
 * A filter from already-built alternatives. An empty list is taken as "no filter" and matches
 * everything (like containerd's `ParseAll()`); an empty alternative also matches everything.
 */
export function filterOf(alternatives: readonly (readonly Selector[])[]): Filter {
  return new AlternativesFilter(alternatives.length === 0 ? [[]] : alternatives);
}

/** A filter that matches everything. */
export const MATCH_ALL: Filter = filterOf([]);

/**
 * The distinct top-level field names a filter uses (`labels."a.b"==x` → `labels`), in order of first
 * use, so that callers can refuse fields their objects do not have.
 */
export function fieldsOf(filter: Filter): string[] {
  const seen = new Set<string>();
  for (const all of filter.alternatives) {
    for (const selector of all) {
      const first = selector.fieldpath[0];
      if (first !== undefined) seen.add(first);
    }
  }
  return [...seen];
}

const BARE_FIELD = /^[A-Za-z0-9_]+$/;

/** A selector written back in filter syntax (quoted where needed); for messages and logs. */
export function formatSelector(selector: Selector): string {
  const path = selector.fieldpath.map((f) => (BARE_FIELD.test(f) ? f : JSON.stringify(f))).join('.');
  if (selector.operator === 'present') return path;
  return `${path}${selector.operator}${JSON.stringify(selector.value)}`;
}
