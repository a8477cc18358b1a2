/**
 * System calls Node lacks (mknod, lsetxattr, llistxattr/lgetxattr), made by one long-lived `perl`
 * co-process per apply or diff (perl-base is essential on Debian). Requests are lines of
 * hex-encoded fields; replies are one line each. Nothing here follows a symlink: the calls are the
 * `l*` variants and mknodat on a path whose parents the caller has checked.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Interface } from 'node:readline';
import { ErrFailedPrecondition, ErrNotImplemented } from '@buildcache/errdefs';

/** Syscall numbers: mknodat, lsetxattr, llistxattr, lgetxattr. */
const SYSCALLS: Record<string, readonly [number, number, number, number]> = {
  x64: [259, 189, 195, 192],
  arm64: [33, 6, 12, 9],
};

const SCRIPT = String.raw`
use strict; use warnings;
my ($MKNODAT, $LSETX, $LLISTX, $LGETX) = @ARGV;
$| = 1; binmode STDIN; binmode STDOUT;
sub hx { return unpack('H*', $_[0]); }
while (my $line = <STDIN>) {
  chomp $line;
  my ($cmd, @a) = map { pack('H*', $_) } split(/ /, $line, -1);
  if ($cmd eq 'mknod') {
    my $r = syscall($MKNODAT + 0, -100, $a[0], $a[1] + 0, $a[2] + 0);
    print($r < 0 ? 'e ' . ($! + 0) . "\n" : "ok\n");
  } elsif ($cmd eq 'setx') {
    my $r = syscall($LSETX + 0, $a[0], $a[1], $a[2], length($a[2]), 0);
    print($r < 0 ? 'e ' . ($! + 0) . "\n" : "ok\n");
  } elsif ($cmd eq 'list') {
    my @out;
    for my $p (@a) {
      my $buf = "\0" x 65536;
      my $n = syscall($LLISTX + 0, $p, $buf, 65536);
      if ($n < 0) { push @out, 'e' . ($! + 0); next; }
      my @pairs;
      for my $name (split(/\0/, substr($buf, 0, $n))) {
        next if $name eq '';
        my $val = "\0" x 65536;
        my $m = syscall($LGETX + 0, $p, $name, $val, 65536);
        next if $m < 0;
        push @pairs, hx($name) . '=' . hx(substr($val, 0, $m));
      }
      push @out, 'x' . join(',', @pairs);
    }
    print('ok ' . join(' ', @out) . "\n");
  } else { print("e 22\n"); }
}
`;

const hex = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('hex');

/** An errno error from the helper, shaped like Node's fs errors. */
function errnoError(op: string, path: string, errno: number): NodeJS.ErrnoException {
  const names: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 17: 'EEXIST', 20: 'ENOTDIR', 22: 'EINVAL', 30: 'EROFS', 61: 'ENODATA', 95: 'ENOTSUP' };
  const err: NodeJS.ErrnoException = new Error(`${op} ${path}: errno ${errno}`);
  err.code = names[errno] ?? `E${errno}`;
  err.errno = errno;
  err.path = path;
  return err;
}

/** Linux `makedev`. */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** A running helper. Calls are queued; `close()` ends the process. */
export class SysHelper {
  private child: ChildProcessWithoutNullStreams | undefined;
  private lines: Interface | undefined;
  private readonly waiting: Array<(line: string | Error) => void> = [];
  private failed: Error | undefined;

  private start(): void {
    if (this.child) return;
    const nr = SYSCALLS[process.arch];
    if (!nr) throw new ErrNotImplemented(`xattrs and device nodes are not supported on ${process.arch}`);
    const child = spawn('perl', ['-e', SCRIPT, ...nr.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdin.on('error', () => undefined);
    child.stderr.resume();
    const fail = (err: Error): void => {
      this.failed = err;
      for (const w of this.waiting.splice(0)) w(err);
    };
    child.on('error', (err: NodeJS.ErrnoException) =>
      fail(err.code === 'ENOENT' ? new ErrFailedPrecondition('perl is needed for xattrs and device nodes and is not installed', { cause: err }) : err),
    );
    child.on('exit', () => fail(new Error('xattr/mknod helper exited')));
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (line) => this.waiting.shift()?.(line));
  }

  private call(fields: Array<string | Buffer>): Promise<string> {
    this.start();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<string>((resolve, reject) => {
      this.waiting.push((r) => (r instanceof Error ? reject(r) : resolve(r)));
      this.child!.stdin.write(fields.map(hex).join(' ') + '\n');
    });
  }

  /** mknod(2) of a char/block device or fifo at `path` (`mode` includes the S_IF* type bits). */
  async mknod(path: string, mode: number, dev: number): Promise<void> {
    const r = await this.call(['mknod', path, String(mode), String(dev)]);
    if (r !== 'ok') throw errnoError('mknod', path, Number(r.slice(2)));
  }

  /** lsetxattr(2). */
  async setXattr(path: string, name: string, value: Buffer): Promise<void> {
    const r = await this.call(['setx', path, name, value]);
    if (r !== 'ok') throw errnoError('lsetxattr', path, Number(r.slice(2)));
  }

  /** The xattrs of each path (not following symlinks); a path that cannot be listed gets none. */
  async listXattrs(paths: readonly string[]): Promise<Array<Map<string, Buffer>>> {
    if (paths.length === 0) return [];
    const r = await this.call(['list', ...paths]);
    if (!r.startsWith('ok')) throw errnoError('llistxattr', paths[0]!, Number(r.slice(2)));
    const parts = r.slice(3).split(' ');
    return paths.map((_, i) => {
      const out = new Map<string, Buffer>();
      const part = parts[i] ?? '';
      if (!part.startsWith('x') || part.length === 1) return out;
      for (const pair of part.slice(1).split(',')) {
        const [k, v] = pair.split('=') as [string, string | undefined];
        out.set(Buffer.from(k, 'hex').toString('utf8'), Buffer.from(v ?? '', 'hex'));
      }
      return out;
    });
  }

  /** Ends the helper process. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    this.lines?.close();
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.stdin.end();
    });
  }
}
