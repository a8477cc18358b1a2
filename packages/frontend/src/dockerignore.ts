/**
 * `.dockerignore`: which paths of the build context the build may not see. Patterns are Go
 * `filepath.Match` globs plus `**`, relative to the context root; `!pattern` re-includes; the last
 * matching pattern wins; a pattern that matches a directory excludes everything below it.
 */
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

interface Rule {
  readonly regex: RegExp;
  readonly exclude: boolean;
}

function globToRegex(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (body.startsWith('^') || body.startsWith('!')) body = '^' + body.slice(1);
        re += `[${body}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) re += '\\' + pattern[++i]!;
    else re += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** A compiled `.dockerignore`. */
export class IgnoreMatcher {
  private readonly rules: readonly Rule[];
  /** Whether any `!` rule exists (then an excluded directory must still be walked). */
  readonly hasExceptions: boolean;

  constructor(patterns: readonly string[]) {
    const rules: Rule[] = [];
    for (let p of patterns) {
      p = p.trim();
      if (p === '' || p.startsWith('#')) continue;
      const exclude = !p.startsWith('!');
      if (!exclude) p = p.slice(1).trim();
      p = posix.normalize(p).replace(/^\/+/, '').replace(/\/+$/, '');
      if (p === '.' || p === '') continue;
      rules.push({ regex: globToRegex(p), exclude });
    }
    this.rules = rules;
    this.hasExceptions = rules.some((r) => !r.exclude);
  }

  /** Whether `path` (relative to the context, `/`-separated) is excluded, itself or through a parent. */
  ignores(path: string): boolean {
    if (this.rules.length === 0) return false;
    const parts = path.split('/');
    let excluded = false;
    for (const rule of this.rules) {
      for (let n = 1; n <= parts.length; n++) {
        if (rule.regex.test(parts.slice(0, n).join('/'))) {
          excluded = rule.exclude;
          break;
        }
      }
    }
    return excluded;
  }

  /** The rules of `<context>/.dockerignore` (none when the file is missing). */
  static async load(context: string): Promise<IgnoreMatcher> {
    const text = await readFile(join(context, '.dockerignore'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return new IgnoreMatcher(text.split(/\r?\n/));
  }
}
