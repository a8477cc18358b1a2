/**
 * The metadata co-process of the native tree copy: one long-lived `perl` process per snapshotter
 * (perl-base is essential on Debian), started on first use, that makes the system calls Node lacks
 * or cannot make exactly — llistxattr/lgetxattr, lsetxattr, mknodat, and utimensat with whole
 * nanoseconds (Node's `utimes` takes a double, which keeps only ~0.25 µs at today's epoch). One
 * request carries many paths, so a copy of a small tree costs two or three round trips. Nothing
 * follows a symlink: every call is the `l*` / `AT_SYMLINK_NOFOLLOW` variant, and chmod is never sent
 * for a symlink. The process does not keep Node's event loop alive while idle, and a helper that
 * died is started again on the next call.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Syscall numbers: mknodat, lsetxattr, llistxattr, lgetxattr, fchownat, utimensat. */
const SYSCALLS: Record<string, readonly number[]> = {
  x64: [259, 189, 195, 192, 260, 280],
  arm64: [33, 6, 12, 9, 54, 88],
};

const SCRIPT = String.raw`
use strict; use warnings;
my ($MKNODAT, $LSETX, $LLISTX, $LGETX, $FCHOWNAT, $UTIMENSAT) = map { $_ + 0 } @ARGV;
my ($AT_FDCWD, $NOFOLLOW) = (-100, 0x100);
$| = 1; binmode STDIN; binmode STDOUT;
my $lbuf = "\0" x 65536; my $vbuf = "\0" x 65536;
sub hx { return unpack('H*', $_[0]); }
while (my $line = <STDIN>) {
  chomp $line;
  my ($cmd, @a) = map { pack('H*', $_) } split(/ /, $line, -1);
  if ($cmd eq 'ping') { print("ok\n"); }
  elsif ($cmd eq 'mknod') {
    my $r = syscall($MKNODAT, $AT_FDCWD, $a[0], $a[1] + 0, $a[2] + 0);
    print($r < 0 ? 'e ' . ($! + 0) . "\n" : "ok\n");
  } elsif ($cmd eq 'list') {
    my @out;
    for my $p (@a) {
      my $n = syscall($LLISTX, $p, $lbuf, 65536);
      if ($n < 0) { push @out, 'e' . ($! + 0); next; }
      my @pairs; my $err = 0;
      for my $name (split(/\0/, substr($lbuf, 0, $n))) {
        next if $name eq '';
        my $m = syscall($LGETX, $p, $name, $vbuf, 65536);
        if ($m < 0) { next if $! + 0 == 61; $err = $! + 0; last; }
        push @pairs, hx($name) . '=' . hx(substr($vbuf, 0, $m));
      }
      push @out, $err ? "e$err" : 'x' . join(',', @pairs);
    }
    print('ok ' . join(' ', @out) . "\n");
  } elsif ($cmd eq 'meta') {
    my ($i, $k, $fail) = (0, 0, '');
    while ($k < @a) {
      my ($p, $uid, $gid, $mode, $as, $ans, $ms, $mns, $nx) = @a[$k .. $k + 8];
      $k += 9;
      if (syscall($FCHOWNAT, $AT_FDCWD, $p, $uid + 0, $gid + 0, $NOFOLLOW) < 0) { $fail = 'e ' . ($! + 0) . " $i lchown"; last; }
      for (1 .. $nx) {
        my ($name, $val) = @a[$k, $k + 1];
        $k += 2;
        if (syscall($LSETX, $p, $name, $val, length($val), 0) < 0) { $fail = 'e ' . ($! + 0) . " $i lsetxattr"; last; }
      }
      last if $fail ne '';
      if ($mode ne '' && !chmod($mode + 0, $p)) { $fail = 'e ' . ($! + 0) . " $i chmod"; last; }
      my $ts = pack('q4', $as, $ans, $ms, $mns);
      if (syscall($UTIMENSAT, $AT_FDCWD, $p, $ts, $NOFOLLOW) < 0) { $fail = 'e ' . ($! + 0) . " $i utimensat"; last; }
      $i++;
    }
    print($fail eq '' ? "ok\n" : "$fail\n");
  } else { print("e 22\n"); }
}
`;

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 13: 'EACCES', 17: 'EEXIST', 20: 'ENOTDIR', 22: 'EINVAL', 28: 'ENOSPC',
  30: 'EROFS', 34: 'ERANGE', 61: 'ENODATA', 95: 'ENOTSUP',
};

/** An errno error from the helper, shaped like Node's fs errors. */
export function helperErrno(op: string, path: string, errno: number): NodeJS.ErrnoException {
  const code = ERRNO_NAMES[errno] ?? `E${errno}`;
  const err: NodeJS.ErrnoException = new Error(`${op} ${path}: ${code}`);
  err.code = code;
  err.errno = errno;
  err.path = path;
  err.syscall = op;
  return err;
}

/** Metadata to set on one copied inode, in the order lchown → xattrs → chmod → utimensat. */
export interface InodeMeta {
  readonly path: string;
  readonly uid: number;
  readonly gid: number;
  /** Permission bits incl. setuid/setgid/sticky; undefined for a symlink (no chmod). */
  readonly mode: number | undefined;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly xattrs: ReadonlyMap<string, Buffer>;
}

/** xattrs of one path, or the errno that listing it failed with. */
export type XattrListing = Map<string, Buffer> | number;

const hex = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('hex');

/** Splits nanoseconds since the epoch into timespec seconds and nanoseconds (floor, as the kernel stores them). */
function timespec(ns: bigint): [string, string] {
  let sec = ns / 1_000_000_000n;
  let rem = ns % 1_000_000_000n;
  if (rem < 0n) {
    sec -= 1n;
    rem += 1_000_000_000n;
  }
  return [String(sec), String(rem)];
}

/** The co-process. `available` is false where it cannot run (then callers copy with `cp -a`). */
export class MetaHelper {
  private child: ChildProcessWithoutNullStreams | undefined;
  private waiting: Array<(line: string | Error) => void> = [];
  private unusable = SYSCALLS[process.arch] === undefined;
  private probed: Promise<boolean> | undefined;

  /** True once a `ping` got its answer; false when perl is missing or the arch is unknown. */
  available(): Promise<boolean> {
    if (this.unusable) return Promise.resolve(false);
    this.probed ??= this.call(['ping']).then(
      (r) => r === 'ok',
      () => {
        this.unusable = true;
        return false;
      },
    );
    return this.probed;
  }

  private start(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const nr = SYSCALLS[process.arch]!;
    const child = spawn('perl', ['-e', SCRIPT, ...nr.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const waiting: Array<(line: string | Error) => void> = [];
    this.waiting = waiting;
    const fail = (err: Error): void => {
      if (this.child === child) this.child = undefined;
      for (const w of waiting.splice(0)) w(err);
    };
    child.on('error', fail);
    child.on('exit', () => fail(new Error('tree metadata helper exited')));
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

  private async call(fields: Array<string | Buffer>): Promise<string> {
    const child = this.start();
    const reply = new Promise<string | Error>((resolve) => this.waiting.push(resolve));
    this.hold(true);
    child.stdin.write(fields.map(hex).join(' ') + '\n');
    const line = await reply;
    if (this.waiting.length === 0) this.hold(false);
    if (line instanceof Error) throw line;
    return line;
  }

  /** mknod(2) of a device node, fifo or socket (`mode` includes the S_IF* type bits). */
  async mknod(path: string, mode: number, rdev: number): Promise<void> {
    const r = await this.call(['mknod', path, String(mode), String(rdev)]);
    if (r !== 'ok') throw helperErrno('mknod', path, Number(r.slice(2)));
  }

  /** The xattrs of each path, not following symlinks; a path that cannot be listed gets its errno. */
  async listXattrs(paths: readonly string[]): Promise<XattrListing[]> {
    if (paths.length === 0) return [];
    const r = await this.call(['list', ...paths]);
    if (!r.startsWith('ok')) throw helperErrno('llistxattr', paths[0]!, Number(r.slice(2)));
    const parts = r.length > 3 ? r.slice(3).split(' ') : [];
    return paths.map((_, i): XattrListing => {
      const part = parts[i] ?? 'x';
      if (part.startsWith('e')) return Number(part.slice(1));
      const out = new Map<string, Buffer>();
      if (part.length === 1) return out;
      for (const pair of part.slice(1).split(',')) {
        const [k, v] = pair.split('=') as [string, string | undefined];
        out.set(Buffer.from(k, 'hex').toString('latin1'), Buffer.from(v ?? '', 'hex'));
      }
      return out;
    });
  }

  /** Sets owner, xattrs, mode and nanosecond times of each inode, in order; stops at the first failure. */
  async setMeta(items: readonly InodeMeta[]): Promise<void> {
    if (items.length === 0) return;
    const fields: Array<string | Buffer> = ['meta'];
    for (const m of items) {
      fields.push(m.path, String(m.uid), String(m.gid), m.mode === undefined ? '' : String(m.mode));
      fields.push(...timespec(m.atimeNs), ...timespec(m.mtimeNs), String(m.xattrs.size));
      for (const [name, value] of m.xattrs) fields.push(Buffer.from(name, 'latin1'), value);
    }
    const r = await this.call(fields);
    if (r === 'ok') return;
    const [, errno, index, op] = r.split(' ');
    throw helperErrno(op ?? 'meta', items[Number(index)]?.path ?? items[0]!.path, Number(errno));
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
