/**
 * Loads the compiled addon (a source build in build/Release, else the prebuild matching this
 * platform, arch and libc) once, on first use. A machine where neither loads gets one typed error
 * that says how to build it; nothing falls back to another implementation.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrFailedPrecondition } from '@buildcache/errdefs';

/** A path or name as the kernel sees it: a string (UTF-8) or the exact bytes. */
export type Bytes = string | Buffer;

/** The addon's functions, as compiled (see csrc/). */
export interface Native {
  readonly sourceDigest: string;
  mount(source: Bytes, target: Bytes, fstype: Bytes, flags: number, data?: Bytes, cwd?: Bytes): Promise<void>;
  umount(target: Bytes, flags?: number): Promise<void>;
  mknodat(path: Bytes, mode: number, dev: number): Promise<void>;
  lsetxattr(path: Bytes, name: Bytes, value: Bytes, flags?: number): Promise<void>;
  lgetxattr(path: Bytes, name: Bytes): Promise<Buffer>;
  llistxattr(path: Bytes): Promise<Buffer[]>;
  lremovexattr(path: Bytes, name: Bytes): Promise<void>;
  lchown(path: Bytes, uid: number, gid: number): Promise<void>;
  utimensat(path: Bytes, atimeNs: bigint, mtimeNs: bigint, flags?: number): Promise<void>;
  renameat2(from: Bytes, to: Bytes, flags?: number): Promise<void>;
  syncfs(path: Bytes): Promise<void>;
  copyFile(src: Bytes, dst: Bytes): Promise<void>;
  copyTree(src: Bytes, dst: Bytes, threads?: number, cancelled?: boolean): [Promise<void>, () => void];
  usage(path: Bytes): Promise<{ size: number; inodes: number }>;
  removeTree(path: Bytes): Promise<void>;
  writeEntries(root: Bytes, entries: readonly EntryWrite[], walk?: boolean): Promise<void>;
  sha256New(): Sha256State;
  sha256Update(state: Sha256State, chunks: readonly Uint8Array[]): Promise<void>;
  sha256Digest(state: Sha256State): string;
}

/** The addon's sha256 state (an opaque external). */
export type Sha256State = { readonly __sha256: unique symbol };

/** One item of `writeEntries` (see index.ts). */
export type EntryWrite =
  | { readonly kind: 0; readonly path: Bytes; readonly data: Buffer; readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: number; readonly chown: boolean }
  | { readonly kind: 1; readonly path: Bytes }
  | { readonly kind: 2; readonly path: Bytes; readonly link: Bytes; readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: number; readonly chown: boolean }
  | { readonly kind: 3; readonly path: Bytes; readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: number; readonly chown: boolean };

/** The package directory (holds binding.gyp, build/ and prebuilds/). */
export const PACKAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** What to run when the addon does not load. */
export const BUILD_HINT = 'build it with `npm rebuild @buildcache/sys --build-from-source` (needs python3, make and g++)';

let loaded: Native | undefined;
let failure: ErrFailedPrecondition | undefined;

/** The addon, loading it on first use; throws ErrFailedPrecondition saying how to build it. */
export function native(): Native {
  if (loaded) return loaded;
  if (failure) throw failure;
  try {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => Native;
    loaded = load(PACKAGE_DIR);
    return loaded;
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    failure = new ErrFailedPrecondition(
      `the native addon @buildcache/sys does not load on ${process.platform}-${process.arch} (${why}): ${BUILD_HINT}`,
      { cause: err },
    );
    throw failure;
  }
}
