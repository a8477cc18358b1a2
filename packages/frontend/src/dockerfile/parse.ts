/**
 * Reading a Dockerfile into instructions: comments, line continuations, `--flag=value` options and
 * the JSON (exec) form, each instruction with the line it starts on. Which instructions exist and
 * which this frontend supports is decided here, so that a Dockerfile it cannot build fails before
 * anything runs.
 */
import { ErrDockerfileParse } from '@buildcache/errdefs';

/** One instruction as written: keyword, options, and the rest of the line (or its JSON array). */
export interface Instruction {
  /** Upper-case keyword. */
  readonly keyword: string;
  /** Line (1-based) the instruction starts on. */
  readonly line: number;
  /** `--name=value` options before the arguments. */
  readonly flags: ReadonlyMap<string, string>;
  /** The arguments as written (after the options), continuation lines joined with a space. */
  readonly rest: string;
  /** The arguments as a JSON array of strings, when written that way (exec form). */
  readonly json?: readonly string[];
  /** The instruction as docker prints it: keyword and arguments on one line. */
  readonly text: string;
}

/** The instructions this frontend builds, and the options each accepts. */
const SUPPORTED: Readonly<Record<string, readonly string[]>> = {
  FROM: [],
  COPY: ['chown', 'chmod'],
  RUN: [],
  ENV: [],
  WORKDIR: [],
  USER: [],
  ARG: [],
  CMD: [],
  ENTRYPOINT: [],
  LABEL: [],
};
/** Dockerfile instructions that exist but are not built here. */
const UNSUPPORTED = ['ADD', 'EXPOSE', 'VOLUME', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'MAINTAINER'];
/** Instructions whose arguments may be a JSON array. */
const JSON_FORM = new Set(['RUN', 'CMD', 'ENTRYPOINT', 'COPY']);

function fail(message: string, line: number, keyword?: string): never {
  throw new ErrDockerfileParse(`Dockerfile:${line}: ${message}`, { details: { line, ...(keyword ? { instruction: keyword } : {}) } });
}

/** Logical lines: comments dropped, continuations (`\` at the end) joined; each with its first line number. */
function logicalLines(source: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let cur: { line: number; text: string } | undefined;
  const physical = source.split(/\r?\n/);
  for (let n = 0; n < physical.length; n++) {
    const raw = physical[n]!;
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (cur && trimmed === '')) continue;
    if (!cur && trimmed === '') continue;
    const continued = /\\\s*$/.test(raw);
    const part = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (cur) cur.text += ' ' + part.trim();
    else cur = { line: n + 1, text: part.trim() };
    if (!continued) {
      out.push(cur);
      cur = undefined;
    }
  }
  if (cur) out.push(cur);
  return out;
}

function parseJsonArray(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(rest);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // not JSON: the shell form, as Docker treats it
  }
  return undefined;
}

/** Parses a Dockerfile; unknown, unsupported or malformed instructions fail with ErrDockerfileParse naming the line. */
export function parseDockerfile(source: string): Instruction[] {
  const out: Instruction[] = [];
  for (const { line, text } of logicalLines(source)) {
    const m = /^(\S+)\s*(.*)$/s.exec(text)!;
    const keyword = m[1]!.toUpperCase();
    let rest = m[2]!.trim();
    if (UNSUPPORTED.includes(keyword)) {
      fail(`unsupported instruction ${keyword}; buildcache build supports ${Object.keys(SUPPORTED).join(', ')}`, line, keyword);
    }
    const allowed = SUPPORTED[keyword];
    if (!allowed) fail(`unknown instruction: ${m[1]}`, line, m[1]);
    const flags = new Map<string, string>();
    for (;;) {
      const f = /^--([A-Za-z-]+)(?:=(\S*))?(?:\s+|$)/.exec(rest);
      if (!f || keyword === 'ENV' || keyword === 'LABEL' || keyword === 'ARG') break;
      if (!allowed.includes(f[1]!)) fail(`${keyword} --${f[1]} is not supported${allowed.length ? ` (only ${allowed.map((a) => '--' + a).join(', ')})` : ''}`, line, keyword);
      if (f[2] === undefined || f[2] === '') fail(`${keyword} --${f[1]} needs a value (--${f[1]}=VALUE)`, line, keyword);
      flags.set(f[1]!, f[2]);
      rest = rest.slice(f[0].length);
    }
    if (rest === '' && keyword !== 'CMD' && keyword !== 'ENTRYPOINT') fail(`${keyword} needs at least one argument`, line, keyword);
    const json = JSON_FORM.has(keyword) ? parseJsonArray(rest) : undefined;
    const shown = [keyword, ...[...flags].map(([k, v]) => `--${k}=${v}`), rest].filter(Boolean).join(' ');
    out.push({ keyword, line, flags, rest, text: shown, ...(json ? { json } : {}) });
  }
  if (!out.some((i) => i.keyword === 'FROM')) {
    throw new ErrDockerfileParse('the Dockerfile has no FROM instruction; start it with FROM scratch or FROM <image>', { details: {} });
  }
  return out;
}
