/**
 * A long-lived `perl` helper process for the system calls Node lacks (mount, xattrs, mknod,
 * nanosecond utimensat); perl-base is essential on Debian. Requests are lines of hex-encoded fields
 * separated by spaces, answered by one line each, in order. The process starts on the first call,
 * keeps Node's event loop alive only while calls are outstanding, and is restarted by the next call
 * after it died.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ErrFailedPrecondition } from '@buildcache/errdefs';

const hex = (s: string | Uint8Array): string =>
  (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s.buffer, s.byteOffset, s.byteLength)).toString('hex');

/** Syscall numbers, by `process.arch`, by name. */
export const SYSCALL_NUMBERS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  x64: { mount: 165, umount2: 166, mknodat: 259, lsetxattr: 189, llistxattr: 195, lgetxattr: 192, fchownat: 260, utimensat: 280 },
  arm64: { mount: 40, umount2: 39, mknodat: 33, lsetxattr: 6, llistxattr: 12, lgetxattr: 9, fchownat: 54, utimensat: 88 },
};

/** The numbers of `names` on this machine, or undefined where the architecture is not known. */
export function syscallNumbers(names: readonly string[]): number[] | undefined {
  const table = SYSCALL_NUMBERS[process.arch];
  if (!table) return undefined;
  return names.map((n) => table[n]!);
}

/** An errno as Node's fs errors carry it (`code`, `errno`, `path`). */
export function errnoError(op: string, path: string, errno: number): NodeJS.ErrnoException {
  const names: Record<number, string> = {
    1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 20: 'ENOTDIR',
    22: 'EINVAL', 28: 'ENOSPC', 30: 'EROFS', 34: 'ERANGE', 61: 'ENODATA', 95: 'ENOTSUP',
  };
  const code = names[errno] ?? `E${errno}`;
  const err: NodeJS.ErrnoException = new Error(`${op} ${path}: ${code}`);
  err.code = code;
  err.errno = errno;
  err.path = path;
  err.syscall = op;
  return err;
}

/** One helper process running `script` with `args`. */
export class Coprocess {
  private child: ChildProcessWithoutNullStreams | undefined;
  private waiting: Array<(line: string | Error) => void> = [];
  private missing: Error | undefined;

  constructor(
    private readonly name: string,
    private readonly script: string,
    private readonly args: readonly string[],
  ) {}

  /** False once perl turned out to be missing. */
  get usable(): boolean {
    return this.missing === undefined;
  }

  private start(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn('perl', ['-e', this.script, ...this.args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const waiting: Array<(line: string | Error) => void> = [];
    this.waiting = waiting;
    const fail = (err: Error): void => {
      if (this.child === child) this.child = undefined;
      for (const w of waiting.splice(0)) w(err);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        this.missing = new ErrFailedPrecondition(`perl is needed for the ${this.name} and is not installed`, { cause: err });
      }
      fail(this.missing ?? err);
    });
    child.on('exit', () => fail(new Error(`the ${this.name} exited`)));
    child.stdin.on('error', () => undefined);
    child.stderr.resume();
    createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(line));
    this.child = child;
    return child;
  }

  /** Keeps Node alive only while calls are outstanding. */
  private hold(on: boolean): void {
    const c = this.child;
    if (!c) return;
    for (const s of [c.stdin, c.stdout, c.stderr] as unknown as { ref(): void; unref(): void }[]) {
      if (on) s.ref();
      else s.unref();
    }
    if (on) c.ref();
    else c.unref();
  }

  /** Sends one request and resolves with its reply line. */
  async call(fields: ReadonlyArray<string | Uint8Array>): Promise<string> {
    if (this.missing) throw this.missing;
    const child = this.start();
    const reply = new Promise<string | Error>((resolve) => this.waiting.push(resolve));
    this.hold(true);
    child.stdin.write(fields.map(hex).join(' ') + '\n');
    const line = await reply;
    if (this.waiting.length === 0) this.hold(false);
    if (line instanceof Error) throw line;
    return line;
  }

  /** Ends the process (a later call starts a new one). */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.hold(true); // an unref'd child would let the event loop end before its exit
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.stdin.end();
    });
  }
}
