/**
 * mount(2) and umount2(2) without a process per call: one long-lived `perl` co-process (perl-base is
 * essential on Debian) makes the system calls. Mount options are split into flags and data as
 * mount(8) and containerd do; a read-only bind is a bind followed by a read-only remount. The
 * co-process is started on first use and does not keep Node's event loop alive while idle.
 */
import { Coprocess, syscallNumbers } from './coprocess.js';

const NUMBERS = syscallNumbers(['mount', 'umount2']);

const SCRIPT = String.raw`
use strict; use warnings;
my ($MOUNT, $UMOUNT2) = @ARGV;
$| = 1; binmode STDIN; binmode STDOUT;
while (my $line = <STDIN>) {
  chomp $line;
  my ($cmd, @a) = map { pack('H*', $_) } split(/ /, $line, -1);
  my $r;
  if ($cmd eq 'mount') {
    my ($source, $target, $type, $flags, $data, $cwd) = @a;
    if ($cwd ne '' && !chdir($cwd)) { print('e ' . ($! + 0) . "\n"); next; }
    $r = syscall($MOUNT + 0, $source, $target, $type, $flags + 0, $data eq '' ? 0 : $data);
    my $errno = $! + 0;
    chdir('/') if $cwd ne '';
    print($r < 0 ? "e $errno\n" : "ok\n");
  } elsif ($cmd eq 'umount') {
    $r = syscall($UMOUNT2 + 0, $a[0], $a[1] + 0);
    print($r < 0 ? 'e ' . ($! + 0) . "\n" : "ok\n");
  } else { print("e 22\n"); }
}
`;

const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, REC: 16384, RELATIME: 1 << 21, STRICTATIME: 1 << 24,
} as const;

/** Options that are flags: [set, clear]. Everything else is filesystem data. */
const FLAG_OPTIONS: Record<string, readonly [number, number]> = {
  async: [0, MS.SYNCHRONOUS], atime: [0, MS.NOATIME], bind: [MS.BIND, 0], defaults: [0, 0], dev: [0, MS.NODEV],
  diratime: [0, MS.NODIRATIME], dirsync: [MS.DIRSYNC, 0], exec: [0, MS.NOEXEC], mand: [MS.MANDLOCK, 0],
  noatime: [MS.NOATIME, 0], nodev: [MS.NODEV, 0], nodiratime: [MS.NODIRATIME, 0], noexec: [MS.NOEXEC, 0],
  nomand: [0, MS.MANDLOCK], norelatime: [0, MS.RELATIME], nostrictatime: [0, MS.STRICTATIME],
  nosuid: [MS.NOSUID, 0], rbind: [MS.BIND | MS.REC, 0], relatime: [MS.RELATIME, 0], remount: [MS.REMOUNT, 0],
  ro: [MS.RDONLY, 0], rw: [0, MS.RDONLY], strictatime: [MS.STRICTATIME, 0], suid: [0, MS.NOSUID],
  sync: [MS.SYNCHRONOUS, 0],
};

/** Flags and data of a mount option list. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const opt of options) {
    const f = FLAG_OPTIONS[opt];
    if (f) flags = (flags | f[0]) & ~f[1];
    else data.push(opt);
  }
  return { flags, data: data.join(',') };
}

/** A system call that failed, with its errno name as `code` (like Node's fs errors). */
export class SyscallError extends Error {
  readonly code: string;
  constructor(
    readonly op: string,
    readonly errno: number,
    readonly path: string,
  ) {
    const names: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 16: 'EBUSY', 19: 'ENODEV', 20: 'ENOTDIR', 22: 'EINVAL', 30: 'EROFS' };
    super(`${op} ${path}: ${names[errno] ?? `errno ${errno}`}`);
    this.code = names[errno] ?? `E${errno}`;
  }
}

const coprocess = NUMBERS ? new Coprocess('mount helper', SCRIPT, NUMBERS.map(String)) : undefined;

/** Runs one request; a reply other than `ok` is the call's errno. */
async function call(fields: string[], path: string): Promise<void> {
  const line = await coprocess!.call(fields);
  if (line !== 'ok') throw new SyscallError(fields[0]!, Number(line.slice(2)), path);
}

/** Whether mounts go through the co-process (false: use mount(8)). */
export function syscallMountsAvailable(): boolean {
  return coprocess?.usable === true;
}

/** mount(2) of one mount; a read-only bind gets its read-only remount. `cwd` shortens long overlay paths. */
export async function mountSyscall(type: string, source: string, target: string, options: readonly string[], cwd = ''): Promise<void> {
  const { flags, data } = parseMountOptions(options);
  const fstype = type === 'bind' || type === 'rbind' ? '' : type;
  const bindFlags = type === 'rbind' ? MS.BIND | MS.REC : type === 'bind' ? MS.BIND : 0;
  const all = flags | bindFlags;
  await call(['mount', source, target, fstype, String(all & ~(all & MS.BIND ? MS.RDONLY : 0)), data, cwd], target);
  if (all & MS.BIND && all & MS.RDONLY) {
    await call(['mount', '', target, '', String(MS.REMOUNT | MS.BIND | (all & ~MS.REC)), '', ''], target);
  }
}

/** umount2(2). */
export async function umountSyscall(target: string, detach = false): Promise<void> {
  await call(['umount', target, detach ? '2' : '0'], target);
}
