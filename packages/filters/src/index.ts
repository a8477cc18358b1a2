/**
 * containerd's filter syntax for buildcache: `field`, `field==v`, `field!=v`, `field~=regexp`;
 * commas AND selectors inside one string, separate strings are OR-ed.
 */
export { parseFilters, parseFilter } from './parse.js';
export {
  fieldsOf,
  filterOf,
  formatSelector,
  matchSelector,
  MATCH_ALL,
  type Adaptor,
  type Filter,
  type Operator,
  type Selector,
} from './match.js';
export { adaptObject } from './adapt.js';
