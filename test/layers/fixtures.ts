/**
 * Real tar streams for the layer store's tests, written at test time by two tar writers (GNU tar
 * and Python's tarfile) in several formats — PAX, GNU long names, plain ustar (BusyBox-style), hard links,
 * symlinks, xattrs, a large file with holes — plus GNU tar `--sparse` tars of sparse files and a tar of a real system tree (`/usr/share/zoneinfo` or `/usr/share/doc`).
 * Also the small helpers the layer tests share (`sha`, `collect`).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdir, symlink, link, writeFile, open, access } from 'node:fs/promises';
import { join } from 'node:path';

const run = promisify(execFile);

/** sha256 of `b`, as a digest. */
export const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Every chunk of `it`, concatenated. */
export async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

/** Builds the source tree the generated tars hold. */
async function makeTree(dir: string): Promise<void> {
  const long = 'd'.repeat(60) + '/' + 'e'.repeat(70);
  await mkdir(join(dir, long), { recursive: true });
  await writeFile(join(dir, long, 'f'.repeat(120) + '.txt'), 'long name body\n');
  await writeFile(join(dir, 'small.txt'), 'hello\n');
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'big.bin'), Buffer.alloc(300_000, 7));
  await link(join(dir, 'small.txt'), join(dir, 'hard.txt'));
  await symlink('small.txt', join(dir, 'sym'));
  await writeFile(join(dir, 'ünïcode-名前.txt'), 'utf8 name\n');
  const fh = await open(join(dir, 'sparse.img'), 'w');
  await fh.write(Buffer.from('head'), 0, 4, 0);
  await fh.write(Buffer.from('tail'), 0, 4, 4 << 20);
  await fh.close();
  await run('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.layer", b"xattr-value")', join(dir, 'small.txt')]);
}

// 'ustar' stands in for BusyBox's tar (not installed here): plain ustar headers, no PAX or GNU
// extensions, so names that do not fit ustar (a long last component, non-ASCII) are left out.
const PY = `
import sys, tarfile, os
fmt = {'pax': tarfile.PAX_FORMAT, 'gnu': tarfile.GNU_FORMAT, 'ustar': tarfile.USTAR_FORMAT}[sys.argv[3]]
def fits(ti):
    if fmt != tarfile.USTAR_FORMAT: return ti
    base = os.path.basename(ti.name)
    return ti if len(base) <= 100 and ti.name.isascii() else None
with tarfile.open(sys.argv[1], 'w', format=fmt) as t:
    t.add(sys.argv[2], arcname='.', filter=fits)
`;

/** Writes the fixture tars into `dir`; returns their paths by name. */
export async function makeTars(dir: string): Promise<Record<string, string>> {
  const tree = join(dir, 'tree');
  await makeTree(tree);
  const out: Record<string, string> = {};
  const gnu = async (name: string, args: string[]): Promise<void> => {
    out[name] = join(dir, `${name}.tar`);
    await run('tar', ['-C', tree, ...args, '-cf', out[name]!, '.']);
  };
  await gnu('gnutar-gnu', ['--format=gnu', '--xattrs']);
  await gnu('gnutar-posix', ['--format=posix', '--xattrs']);
  await gnu('gnutar-ustar-short', ['--format=ustar', '--exclude', './d*', '--exclude', './ü*']);
  for (const fmt of ['pax', 'gnu', 'ustar']) {
    out[`python-${fmt}`] = join(dir, `python-${fmt}.tar`);
    await run('python3', ['-c', PY, out[`python-${fmt}`]!, tree, fmt]);
  }
  return out;
}

/**
 * A tree of sparse files, made as a user makes them (`truncate` then a few writes): 64 MiB with three
 * short writes and a hole at the end, one with 60 data runs (more than an old GNU header and one
 * extension block hold), one ending in data, one of 512 KiB with a hole in the middle (read whole by
 * the applier's small-file path if it were not sparse), and a plain file.
 */
export async function makeSparseTree(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const write = async (name: string, size: number, runs: Array<[number, string]>): Promise<void> => {
    await run('truncate', ['-s', String(size), join(dir, name)]);
    const fh = await open(join(dir, name), 'r+');
    for (const [at, text] of runs) await fh.write(Buffer.from(text), 0, text.length, at);
    await fh.close();
  };
  await write('big-holes.img', 64 << 20, [[0, 'head'], [10 << 20, 'middle'], [40 << 20, 'x'.repeat(10000)]]);
  await write('many-runs.img', 16 << 20, Array.from({ length: 60 }, (_, i): [number, string] => [i * (256 << 10), `run ${i}`]));
  await write('ends-in-data.img', 8 << 20, [[8 << 20, 'end'], [1 << 20, 'one meg']]);
  await write('small.img', 512 << 10, [[0, 'a'], [(512 << 10) - 1, 'z']]);
  await writeFile(join(dir, 'plain.txt'), 'not sparse\n');
}

/** GNU tar `--sparse` tars of the sparse tree: old GNU format, and PAX sparse 1.0 (the default), 0.0 and 0.1. */
export async function sparseTars(dir: string): Promise<Record<string, string>> {
  const tree = join(dir, 'sparse-tree');
  await makeSparseTree(tree);
  const out: Record<string, string> = {};
  const variants: Record<string, string[]> = {
    gnu: ['--format=gnu'],
    'posix-1.0': ['--format=posix'],
    'posix-0.0': ['--format=posix', '--sparse-version=0.0'],
    'posix-0.1': ['--format=posix', '--sparse-version=0.1'],
  };
  for (const [name, args] of Object.entries(variants)) {
    out[name] = join(dir, `sparse-${name}.tar`);
    await run('tar', ['-C', tree, ...args, '--sparse', '-cf', out[name]!, '.']);
  }
  return out;
}

/** A tar of a real system tree (bounded size), and which tree it is. */
export async function systemTreeTar(dir: string): Promise<{ path: string; tree: string }> {
  let tree = '/usr/share/zoneinfo';
  await access(tree).catch(() => {
    tree = '/usr/share/doc';
  });
  const path = join(dir, 'system.tar');
  await run('tar', ['-C', tree, '-cf', path, '.']);
  return { path, tree };
}
