/** Filter matching for the embedded stores, over `@buildcache/filters` (containerd's syntax). */
import { parseFilters } from '@buildcache/filters';
import type { Adaptor, Filter } from '@buildcache/filters';

/** Parses containerd filter strings (ErrInvalidArgument on a syntax error); none match everything. */
export function compileFilters(filters: readonly string[] | undefined): Filter {
  return parseFilters(filters ?? []);
}

/** An adaptor over fixed fields plus `labels.<key>` (a label key may itself contain dots). */
export function fieldsAdaptor(fields: Readonly<Record<string, string | undefined>>, labels: Readonly<Record<string, string>>): Adaptor {
  return (path) => {
    if (path.length === 0) return undefined;
    if (path[0] === 'labels') {
      if (path.length === 1) return Object.keys(labels).length > 0 ? '' : undefined;
      const key = path.slice(1).join('.');
      return Object.hasOwn(labels, key) ? labels[key] : undefined;
    }
    if (path.length !== 1) return undefined;
    return fields[path[0]!];
  };
}
