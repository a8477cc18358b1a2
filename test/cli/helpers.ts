/** Running the real `buildcache` binary: in a child process with pipes, or on a pseudo-terminal (util-linux `script`). */
import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSyntheticRecords, type SyntheticShape } from '../support/synthetic.js';

/** The CLI's entry point. */
export const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../packages/cli/bin/buildcache.js');

/** How a run ended and what it printed. */
export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of a run. */
export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly uid?: number;
  readonly gid?: number;
  readonly cwd?: string;
  /** Options of node itself, before the entry point (e.g. `--import`). */
  readonly nodeArgs?: readonly string[];
}

/** Starts the binary with piped stdio. */
export function spawnCli(args: readonly string[], options: RunOptions = {}): ChildProcess {
  return spawn(process.execPath, [...(options.nodeArgs ?? []), bin, ...args], {
    env: { ...process.env, ...options.env },
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid ?? options.uid } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}

/** Collects a child's output until it exits. */
export function collect(child: ChildProcess): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr })));
}

/** Runs the binary to completion. */
export function run(args: readonly string[], options: RunOptions = {}): Promise<Run> {
  const child = spawnCli(args, options);
  child.stdin?.end();
  return collect(child);
}

/** Asserts-friendly: the non-empty lines of `text`. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A new temp dir, removed after the file's tests. */
export async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'bc-cli-'));
  dirs.push(d);
  return d;
}

/** A cache root holding `count` synthetic records (see test/support/synthetic). */
export async function syntheticRoot(count: number, shape?: (i: number) => SyntheticShape): Promise<string> {
  const root = await tempDir();
  await writeSyntheticRecords(join(root, 'metadata'), count, shape);
  return root;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** A run on a pseudo-terminal: stdin, stdout and stderr of the binary are all the terminal. */
export interface PtyRun {
  /** Everything the terminal showed so far (stdout and stderr interleaved, `\r\n` line ends). */
  readonly output: () => string;
  /** Types `text` on the terminal (`\x03` is Ctrl-C). */
  type(text: string): void;
  /** Resolves once the output matches `re`. */
  waitFor(re: RegExp): Promise<void>;
  /** Resolves with the binary's exit code. */
  readonly exit: Promise<number | null>;
}

/**
 * Starts the binary on a real pty through util-linux `script`. The pty has `noflsh`: otherwise a
 * typed Ctrl-C makes the tty driver discard output the binary wrote but `script` had not read yet.
 */
export function runInPty(args: readonly string[]): PtyRun {
  const command = `stty noflsh; exec ${[process.execPath, bin, ...args].map(quote).join(' ')}`;
  const child = spawn('script', ['-qefc', command, '/dev/null'], { env: { ...process.env, TERM: 'xterm' } });
  let output = '';
  const waiters: { re: RegExp; res: () => void }[] = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
    for (const w of waiters.splice(0)) {
      if (w.re.test(output)) w.res();
      else waiters.push(w);
    }
  });
  const exit = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  return {
    output: () => output,
    type: (text) => child.stdin.write(text),
    waitFor: (re) =>
      new Promise<void>((res, rej) => {
        if (re.test(output)) return res();
        waiters.push({ re, res });
        void exit.then(() => (re.test(output) ? res() : rej(new Error(`exited before ${re}: ${JSON.stringify(output)}`))));
      }),
    exit,
  };
}
