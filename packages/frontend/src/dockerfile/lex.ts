/**
 * Dockerfile words: quotes, backslash escapes and `$VAR` / `${VAR}` / `${VAR:-default}` /
 * `${VAR:+alt}` expansion, as Docker's shell lexer does them for ENV, ARG, LABEL, COPY, WORKDIR,
 * USER and FROM (RUN is left to the shell).
 */

/** Variables in scope for expansion: a name without a value expands to the empty string. */
export type Vars = ReadonlyMap<string, string>;

/** A malformed word (e.g. an unterminated quote); the parser adds the line number. */
export class LexError extends Error {}

const NAME = /[A-Za-z0-9_]/;

/**
 * Splits `text` into words at unquoted whitespace (unless `split` is false: one word), removing
 * quotes and escapes and expanding variables from `vars`. `used` collects the names looked up.
 */
export function words(text: string, vars: Vars, options: { split?: boolean; used?: Set<string> } = {}): string[] {
  const split = options.split ?? true;
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  const lookup = (name: string): string | undefined => {
    options.used?.add(name);
    return vars.get(name);
  };
  while (i < text.length) {
    const c = text[i]!;
    if (split && /\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === '\\') {
      cur += text[i + 1] ?? '';
      i += 2;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new LexError(`unterminated single quote in ${JSON.stringify(text)}`);
      cur += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new LexError(`unterminated double quote in ${JSON.stringify(text)}`);
        const d = text[i]!;
        if (d === '"') break;
        if (d === '\\' && i + 1 < text.length && '"\\$'.includes(text[i + 1]!)) {
          cur += text[i + 1];
          i += 2;
        } else if (d === '$') {
          const [value, next] = variable(text, i, lookup);
          cur += value;
          i = next;
        } else {
          cur += d;
          i++;
        }
      }
      i++;
    } else if (c === '$') {
      const [value, next] = variable(text, i, lookup);
      cur += value;
      i = next;
    } else {
      cur += c;
      i++;
    }
  }
  if (inWord || (!split && out.length === 0)) out.push(cur);
  return out;
}

/** Expands the variable reference at `text[i] === '$'`; returns its value and the index after it. */
function variable(text: string, i: number, lookup: (name: string) => string | undefined): [string, number] {
  let j = i + 1;
  if (text[j] === '{') {
    const close = matchingBrace(text, j);
    if (close < 0) throw new LexError(`missing '}' in ${JSON.stringify(text)}`);
    const body = text.slice(j + 1, close);
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?$/s.exec(body);
    if (!m) throw new LexError(`bad substitution \${${body}} in ${JSON.stringify(text)}`);
    const value = lookup(m[1]!);
    const op = m[2];
    const word = (): string => words(m[3] ?? '', new Map(), { split: false }).join('');
    const empty = op?.startsWith(':') ? !value : value === undefined;
    let out = value ?? '';
    if (op?.endsWith('-') && empty) out = expandNested(m[3] ?? '', lookup);
    else if (op?.endsWith('+')) out = empty ? '' : expandNested(m[3] ?? '', lookup);
    else if (op?.endsWith('?') && empty) throw new LexError(`${m[1]}: ${word() || 'parameter not set'}`);
    return [out, close + 1];
  }
  while (j < text.length && NAME.test(text[j]!)) j++;
  if (j === i + 1) return ['$', j];
  return [lookup(text.slice(i + 1, j)) ?? '', j];
}

function expandNested(word: string, lookup: (name: string) => string | undefined): string {
  const vars = new Map<string, string>();
  for (const m of word.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
    const v = lookup(m[1]!);
    if (v !== undefined) vars.set(m[1]!, v);
  }
  return words(word, vars, { split: false }).join('');
}

function matchingBrace(text: string, open: number): number {
  let depth = 0;
  for (let k = open; k < text.length; k++) {
    if (text[k] === '{') depth++;
    else if (text[k] === '}' && --depth === 0) return k;
  }
  return -1;
}

/**
 * Splits `text` at unquoted whitespace keeping quotes and escapes (for ENV/LABEL/ARG, whose
 * `key=value` pairs are split before their values are expanded).
 */
export function rawWords(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === undefined && /\s/.test(c)) {
      if (cur) out.push(cur);
      cur = '';
      continue;
    }
    cur += c;
    if (c === '\\' && quote !== "'" && i + 1 < text.length) cur += text[++i];
    else if (quote === undefined && (c === '"' || c === "'")) quote = c;
    else if (c === quote) quote = undefined;
  }
  if (quote !== undefined) throw new LexError(`unterminated quote in ${JSON.stringify(text)}`);
  if (cur) out.push(cur);
  return out;
}
