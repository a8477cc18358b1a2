/** Shared helpers of the metadata tests: temporary directories, a capturing logger, child processes. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';

/** A fresh temporary directory and its removal. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'buildcache-metadata-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A pino logger that keeps every record (warn and above) in `records`. */
export function captureLogger(): { logger: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, records };
}

/** Absolute path of a compiled fixture script next to the compiled tests. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** A running fixture process whose stdout lines are collected. */
export interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  /** Resolves with the first line that satisfies `match` (rejects if the process exits first). */
  waitFor(match: (line: string) => boolean): Promise<string>;
  /** Resolves when the process has exited, with its code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node <fixture> ...args` and collects its stdout by lines. */
export function spawnFixture(name: string, args: string[]): Child {
  const proc = spawn(process.execPath, [fixture(name), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  let rest = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    lines.push(...parts);
    for (const l of listeners) l();
  });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('close', (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal });
    });
  });
  let closed = false;
  void exited.then(() => {
    closed = true;
  });
  const waitFor = (match: (line: string) => boolean): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = lines.find(match);
        if (hit !== undefined) {
          listeners.delete(check);
          resolve(hit);
        } else if (closed || proc.exitCode !== null || proc.signalCode !== null) {
          listeners.delete(check);
          reject(new Error(`fixture ${name} exited before the expected line; stderr: ${stderr}`));
        }
      };
      listeners.add(check);
      check();
    });
  return { proc, lines, waitFor, exited };
}

/** Every key of the (closed) store at `dir` that starts with `prefix`, read with plain LevelDB. */
export async function rawKeys(dir: string, prefix = ''): Promise<string[]> {
  const { Level } = await import('level');
  const db = new Level<string, string>(dir);
  try {
    return (await db.keys({ gte: prefix }).all()).filter((k) => k.startsWith(prefix));
  } finally {
    await db.close();
  }
}
