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
import { Coprocess, errnoError, syscallNumbers } from '../coprocess.js';

const NUMBERS = syscallNumbers(['mknodat', 'lsetxattr', 'llistxattr', 'lgetxattr', 'fchownat', 'utimensat']);

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

/** An errno error from the helper, shaped like Node's fs errors. */
export const helperErrno = errnoError;

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
  private readonly proc = NUMBERS ? new Coprocess('tree metadata helper', SCRIPT, NUMBERS.map(String)) : undefined;
  private probed: Promise<boolean> | undefined;

  /** True once a `ping` got its answer; false when perl is missing or the arch is unknown. */
  available(): Promise<boolean> {
    const proc = this.proc;
    if (!proc) return Promise.resolve(false);
    this.probed ??= proc.call(['ping']).then(
      (r) => r === 'ok',
      () => false,
    );
    return this.probed;
  }

  private call(fields: Array<string | Buffer>): Promise<string> {
    return this.proc!.call(fields);
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
    await this.proc?.close();
  }
}
