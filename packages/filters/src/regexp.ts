/**
 * Compiling `~=` values. containerd uses Go's RE2 syntax; we use JavaScript's RegExp, which accepts
 * nearly every RE2 pattern people write in filters. Two bridges: a leading Go flag group such as
 * `(?i)` becomes RegExp flags, and a pattern that is invalid in Unicode mode (`\_`, `\-` outside a
 * class, which RE2 accepts) is retried in legacy mode. Like Go's `MatchString`, matching is a
 * search, not anchored.
 */

const LEADING_FLAGS = /^\(\?([A-Za-z]+)\)/;
const JS_FLAGS: Readonly<Record<string, string>> = { i: 'i', m: 'm', s: 's' };

/**
 * Compiles a filter regexp; on a bad pattern calls `fail` with the reason (the caller throws,
 * adding where the pattern was).
 */
export function compileRegExp(source: string, fail: (reason: string) => never): RegExp {
  let pattern = source;
  let flags = '';
  const leading = LEADING_FLAGS.exec(source);
  if (leading?.[1] !== undefined) {
    for (const flag of leading[1]) {
      const js = JS_FLAGS[flag];
      if (js === undefined) fail(`unsupported flag ${JSON.stringify(flag)} in "(?${leading[1]})" (supported: i, m, s)`);
      if (!flags.includes(js)) flags += js;
    }
    pattern = source.slice(leading[0].length);
  }
  try {
    return new RegExp(pattern, flags + 'u');
  } catch {
    // Not valid in Unicode mode; legacy mode accepts identity escapes such as `\_` like RE2 does.
  }
  try {
    return new RegExp(pattern, flags);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
}
