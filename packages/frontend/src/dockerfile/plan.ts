/**
 * From instructions to build steps: ARG and ENV scoping and expansion, the image config each
 * instruction changes (Env, Cmd, Entrypoint, WorkingDir, User, Labels), and for each step that
 * changes the filesystem (COPY, RUN, WORKDIR) its operation key — the digest of everything about
 * the instruction that decides its result besides its inputs.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { ErrDockerfileParse } from '@buildcache/errdefs';
import type { Instruction } from './parse.js';
import { LexError, rawWords, words, type Vars } from './lex.js';

/** The runtime part of an OCI image config that a Dockerfile sets. */
export interface ImageConfig {
  readonly Env: readonly string[];
  readonly Cmd?: readonly string[];
  readonly Entrypoint?: readonly string[];
  readonly WorkingDir: string;
  readonly User: string;
  readonly Labels: Readonly<Record<string, string>>;
}

/** The config of `FROM scratch`. */
export const SCRATCH_CONFIG: ImageConfig = { Env: [], WorkingDir: '', User: '', Labels: {} };

/** The PATH a RUN step gets when the image sets none (Docker's default). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface StepBase {
  /** Position among the steps, 1-based, FROM being 1 (docker's `[i/n]`). */
  readonly index: number;
  readonly line: number;
  /** The instruction as printed in progress (`RUN make`). */
  readonly text: string;
  /** Digest of the operation: what, besides its inputs, decides this step's result. */
  readonly opKey: string;
}

/** `COPY [--chown=U:G] [--chmod=MODE] SRC... DEST` from the build context. */
export interface CopyStep extends StepBase {
  readonly kind: 'copy';
  /** Source paths or patterns, relative to the context root. */
  readonly sources: readonly string[];
  /** Absolute destination; a trailing `/` means a directory. */
  readonly dest: string;
  readonly chown?: string;
  readonly chmod?: number;
}

/** `RUN`: a process in the step's root filesystem. */
export interface RunStep extends StepBase {
  readonly kind: 'run';
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  readonly user: string;
}

/** `WORKDIR`: the directory is created. */
export interface WorkdirStep extends StepBase {
  readonly kind: 'workdir';
  readonly path: string;
}

/** A step that makes a layer. */
export type Step = CopyStep | RunStep | WorkdirStep;

/** The stage's base: `FROM` resolved against the global ARGs. */
export interface FromLine {
  readonly image: string;
  readonly line: number;
  readonly text: string;
}

/** What `planSteps` produces. */
export interface Plan {
  readonly steps: readonly Step[];
  readonly config: ImageConfig;
  /** `--build-arg`s no ARG declared (docker warns about them). */
  readonly unusedArgs: readonly string[];
}

/** The platform steps run on (the op keys include it). */
export const PLATFORM = { os: 'linux', architecture: ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch };

function fail(ins: Instruction, message: string): never {
  throw new ErrDockerfileParse(`Dockerfile:${ins.line}: ${ins.keyword}: ${message}`, { details: { line: ins.line, instruction: ins.keyword } });
}

function lex(ins: Instruction, fn: () => string[]): string[] {
  try {
    return fn();
  } catch (err) {
    if (err instanceof LexError) fail(ins, err.message);
    throw err;
  }
}

/** Digest of a JSON-able value (keys in the order given). */
export function digestOf(value: unknown): string {
  return 'sha256:' + createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/** `key=value` pairs (ENV, LABEL, ARG), or ENV's legacy `key value`. */
function pairs(ins: Instruction, vars: Vars, legacy: boolean): [string, string | undefined][] {
  const raw = lex(ins, () => rawWords(ins.rest));
  if (legacy && raw.length > 0 && !raw[0]!.includes('=')) {
    if (raw.length < 2) fail(ins, `${raw[0]} needs a value (ENV ${raw[0]}=VALUE)`);
    const value = ins.rest.slice(ins.rest.indexOf(raw[0]!) + raw[0]!.length).trim();
    return [[raw[0]!, lex(ins, () => words(value, vars, { split: false })).join('')]];
  }
  return raw.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) {
      if (ins.keyword === 'ARG') return [w, undefined];
      fail(ins, `${JSON.stringify(w)} is not KEY=VALUE`);
    }
    const key = lex(ins, () => words(w.slice(0, eq), vars, { split: false })).join('');
    if (key === '') fail(ins, `${JSON.stringify(w)} has an empty name`);
    return [key, lex(ins, () => words(w.slice(eq + 1), vars, { split: false })).join('')];
  });
}

/** The FROM line, its image expanded with the ARGs declared before it. */
export function fromLine(instructions: readonly Instruction[], buildArgs: Vars): FromLine {
  const globals = new Map<string, string>();
  for (const ins of instructions) {
    if (ins.keyword === 'ARG') {
      for (const [k, v] of pairs(ins, globals, false)) {
        const value = buildArgs.get(k) ?? v;
        if (value !== undefined) globals.set(k, value);
      }
      continue;
    }
    if (ins.keyword !== 'FROM') fail(ins, 'only ARG may come before FROM');
    const w = lex(ins, () => words(ins.rest, globals));
    if (w.length !== 1 && !(w.length === 3 && w[1]!.toLowerCase() === 'as')) fail(ins, 'expected FROM IMAGE [AS NAME]');
    if (instructions.filter((i) => i.keyword === 'FROM').length > 1) fail(ins, 'multi-stage builds (several FROM) are not supported');
    return { image: w[0]!, line: ins.line, text: `FROM ${w[0]}` };
  }
  throw new ErrDockerfileParse('the Dockerfile has no FROM instruction', { details: {} });
}

function envMap(env: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const eq = e.indexOf('=');
    m.set(eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
  }
  return m;
}

function shellOrExec(ins: Instruction): string[] {
  return ins.json ? [...ins.json] : ['/bin/sh', '-c', ins.rest];
}

/** Plans the instructions after FROM over the base image's config. */
export function planSteps(instructions: readonly Instruction[], base: ImageConfig, buildArgs: Vars): Plan {
  const start = instructions.findIndex((i) => i.keyword === 'FROM') + 1;
  const body = instructions.slice(start);
  const env = envMap(base.Env);
  const args = new Map<string, string>();
  const declared = new Set<string>(
    instructions.slice(0, start).filter((i) => i.keyword === 'ARG').flatMap((i) => pairs(i, new Map(), false).map(([k]) => k)),
  );
  let { WorkingDir: workdir, User: user, Cmd: cmd, Entrypoint: entrypoint } = base;
  const labels: Record<string, string> = { ...base.Labels };
  let cmdSet = false;
  const steps: Step[] = [];
  const vars = (): Map<string, string> => new Map([...args, ...env]);
  const step = (ins: Instruction, op: Record<string, unknown>): StepBase => ({
    index: steps.length + 2,
    line: ins.line,
    text: ins.text,
    opKey: digestOf({ v: 1, platform: PLATFORM, ...op }),
  });
  for (const ins of body) {
    switch (ins.keyword) {
      case 'ARG':
        for (const [k, v] of pairs(ins, vars(), false)) {
          declared.add(k);
          const value = buildArgs.get(k) ?? v;
          if (value !== undefined) args.set(k, value);
        }
        break;
      case 'ENV':
        for (const [k, v] of pairs(ins, vars(), true)) env.set(k, v ?? '');
        break;
      case 'LABEL':
        for (const [k, v] of pairs(ins, vars(), false)) labels[k] = v ?? '';
        break;
      case 'USER':
        user = lex(ins, () => words(ins.rest, vars(), { split: false })).join('');
        break;
      case 'CMD':
        cmd = shellOrExec(ins);
        cmdSet = true;
        break;
      case 'ENTRYPOINT':
        entrypoint = ins.rest === '' ? undefined : shellOrExec(ins);
        if (!cmdSet) cmd = undefined;
        break;
      case 'WORKDIR': {
        const w = lex(ins, () => words(ins.rest, vars(), { split: false })).join('');
        workdir = posix.resolve('/', workdir || '/', w);
        steps.push({ ...step(ins, { op: 'workdir', path: workdir }), kind: 'workdir', path: workdir });
        break;
      }
      case 'COPY': {
        const list = ins.json ? [...ins.json] : lex(ins, () => words(ins.rest, vars()));
        if (list.length < 2) fail(ins, 'expected COPY SRC... DEST');
        const rawDest = list[list.length - 1]!;
        const slash = rawDest.endsWith('/') || rawDest === '.' ? '/' : '';
        const dest = posix.resolve('/', workdir || '/', rawDest) + (slash && rawDest !== '/' ? '/' : '');
        const sources = list.slice(0, -1);
        const chown = ins.flags.has('chown') ? lex(ins, () => words(ins.flags.get('chown')!, vars(), { split: false })).join('') : undefined;
        const chmodText = ins.flags.get('chmod');
        if (chmodText !== undefined && !/^[0-7]{3,4}$/.test(chmodText)) fail(ins, `--chmod=${chmodText} is not an octal mode`);
        const chmod = chmodText === undefined ? undefined : parseInt(chmodText, 8);
        const op = { op: 'copy', sources, dest, chown: chown ?? null, chmod: chmod ?? null };
        steps.push({ ...step(ins, op), kind: 'copy', sources, dest, ...(chown ? { chown } : {}), ...(chmod !== undefined ? { chmod } : {}) });
        break;
      }
      case 'RUN': {
        const runEnv = [...new Map([...args, ...env])].map(([k, v]) => `${k}=${v}`);
        if (!env.has('PATH') && !args.has('PATH')) runEnv.unshift(DEFAULT_PATH);
        const cwd = workdir || '/';
        const argv = shellOrExec(ins);
        steps.push({ ...step(ins, { op: 'run', args: argv, env: runEnv, cwd, user, network: 'none' }), kind: 'run', args: argv, env: runEnv, cwd, user });
        break;
      }
      default:
        fail(ins, 'must come once, first (multi-stage builds are not supported)');
    }
  }
  const config: ImageConfig = {
    Env: [...env].map(([k, v]) => `${k}=${v}`),
    WorkingDir: workdir,
    User: user,
    Labels: labels,
    ...(cmd ? { Cmd: cmd } : {}),
    ...(entrypoint ? { Entrypoint: entrypoint } : {}),
  };
  return { steps, config, unusedArgs: [...buildArgs.keys()].filter((k) => !declared.has(k)) };
}
