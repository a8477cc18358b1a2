/**
 * System calls Node lacks (mknod, lsetxattr, llistxattr/lgetxattr), made by one long-lived `perl`
 * co-process per apply or diff (perl-base is essential on Debian). Requests are lines of
 * hex-encoded fields; replies are one line each. Nothing here follows a symlink: the calls are the
 * `l*` variants and mknodat on a path whose parents the caller has checked.
 */
import { ErrNotImplemented } from '@buildcache/errdefs';
import { Coprocess, errnoError, syscallNumbers } from '../../coprocess.js';

const NUMBERS = syscallNumbers(['mknodat', 'lsetxattr', 'llistxattr', 'lgetxattr']);

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

/** Linux `makedev`. */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** A running helper. Calls are queued; `close()` ends the process. */
export class SysHelper {
  private readonly proc = NUMBERS ? new Coprocess('xattr and device-node helper', SCRIPT, NUMBERS.map(String)) : undefined;

  private call(fields: Array<string | Buffer>): Promise<string> {
    if (!this.proc) return Promise.reject(new ErrNotImplemented(`xattrs and device nodes are not supported on ${process.arch}`));
    return this.proc.call(fields);
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
    await this.proc?.close();
  }
}
