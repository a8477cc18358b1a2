/**
 * `.dockerignore`-style path patterns (Docker's patternmatcher): `*` and `?` within one path
 * component, `[...]` classes, `\` escapes, `**` across components, a leading `!` re-includes, a
 * leading `/` is the root; the last pattern that matches a path or one of its parents decides.
 */
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ErrInvalidArgument } from '@buildcache/errdefs';

interface Pattern {
  readonly negated: boolean;
  readonly re: RegExp;
}

/** Turns a glob into an anchored regular expression; `globstar` makes `**` span components. */
export function globToRegExp(glob: string, globstar: boolean): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*') {
      if (globstar && glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else if (ch === '\\') {
      const next = glob[++i];
      if (next === undefined) throw new ErrInvalidArgument(`pattern ${JSON.stringify(glob)} ends with a lone backslash`);
      re += escape(next);
    } else if (ch === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new ErrInvalidArgument(`pattern ${JSON.stringify(glob)} has an unterminated [ class`);
      let body = glob.slice(i + 1, end);
      if (body.startsWith('!') || body.startsWith('^')) body = '^' + body.slice(1);
      re += `[${body.replace(/\\(.)/g, (_m, c: string) => escape(c)).replace(/\//g, '')}]`;
      i = end;
    } else re += escape(ch);
  }
  try {
    return new RegExp(`^${re}$`, 's');
  } catch (err) {
    throw new ErrInvalidArgument(`pattern ${JSON.stringify(glob)} is not a valid pattern`, { cause: err });
  }
}

function escape(ch: string): string {
  return /[.*+?^${}()|[\]\\/-]/.test(ch) ? `\\${ch}` : ch;
}

/** Cleans a pattern as Docker does: lexical cleaning, no leading `/`. */
function cleanPattern(p: string): string {
  const c = posix.normalize(p).replace(/\/+$/, '');
  return c.length > 1 && c.startsWith('/') ? c.replace(/^\/+/, '') : c;
}

/** A list of patterns evaluated in order; the last one matching a path (or a parent) decides. */
export class PatternMatcher {
  readonly #patterns: Pattern[];

  /** Compiles `patterns` (`!` prefix: re-include); throws ErrInvalidArgument naming a bad one. */
  constructor(patterns: readonly string[]) {
    this.#patterns = [];
    for (const raw of patterns) {
      let text = raw.trim();
      const negated = text.startsWith('!');
      if (negated) text = text.slice(1).trim();
      if (text === '') continue;
      this.#patterns.push({ negated, re: globToRegExp(cleanPattern(text), true) });
    }
  }

  /** Whether there is no pattern at all. */
  get empty(): boolean {
    return this.#patterns.length === 0;
  }

  /** Whether some pattern re-includes (`!`): an excluded directory may then hold included paths. */
  get hasNegations(): boolean {
    return this.#patterns.some((p) => p.negated);
  }

  /** Whether `rel` (slash-separated, relative, no leading `/`) is matched. */
  matches(rel: string): boolean {
    const parts = rel.split('/');
    let matched = false;
    for (const p of this.#patterns) {
      if (matched !== p.negated) continue; // cannot change the outcome
      let hit = false;
      for (let n = parts.length; n >= 1 && !hit; n--) hit = p.re.test(n === parts.length ? rel : parts.slice(0, n).join('/'));
      if (hit) matched = !p.negated;
    }
    return matched;
  }
}

/** The patterns of a `.dockerignore` file's text (comments and blank lines skipped). */
export function parseDockerignore(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** The patterns of `<dir>/.dockerignore`, or none when there is no such file. */
export async function readDockerignore(dir: string): Promise<string[]> {
  try {
    return parseDockerignore(await readFile(join(dir, '.dockerignore'), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
