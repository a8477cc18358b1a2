/**
 * Test helpers for backend suites: a `BackendFactory` (so the suites can be lifted into the shared
 * conformance suite and run against containerd), temp roots, blob writing and mounting helpers.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, Mount } from '../../src/types.js';
import { openEmbeddedBackend } from '../../src/embedded/index.js';
import type { EmbeddedBackend } from '../../src/embedded/index.js';
import { removeTree } from '../../src/embedded/fsutil.js';
import { mountPointsUnder } from '../../src/mount-cleanup.js';
import { unmount } from '../../src/mount.js';

/** A backend under test and how to dispose of it. */
export interface Harness<B extends Backend = Backend> {
  readonly backend: B;
  /** Opens the same store again (after `close()`), for reopen/durability checks. */
  reopen(): Promise<B>;
  dispose(): Promise<void>;
}

/** Makes a fresh, empty backend. `clock` is honoured where the backend supports it. */
export type BackendFactory<B extends Backend = Backend> = (options?: { clock?: () => number }) => Promise<Harness<B>>;

/** The snapshot drivers this machine can run: native always, overlayfs as root with overlay. */
export async function availableDrivers(): Promise<Array<'overlayfs' | 'native'>> {
  const fs = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  return process.getuid?.() === 0 && /\toverlay$/m.test(fs) ? ['overlayfs', 'native'] : ['native'];
}

/** Factory for the embedded backend with a forced driver, each harness in its own temp root. */
export function embeddedFactory(driver: 'overlayfs' | 'native'): BackendFactory<EmbeddedBackend> {
  return async (options) => {
    const root = await mkdtemp(join(tmpdir(), `bc-embedded-${driver}-`));
    const open = (): Promise<EmbeddedBackend> =>
      openEmbeddedBackend({ root, snapshotter: driver, ...(options?.clock ? { clock: options.clock } : {}) });
    let backend = await open();
    return {
      get backend() {
        return backend;
      },
      reopen: async () => {
        backend = await open();
        return backend;
      },
      dispose: async () => {
        await backend.close().catch(() => undefined);
        for (const p of await mountPointsUnder(root)) await unmount(p).catch(() => undefined);
        await removeTree(root);
      },
    };
  };
}

/** sha256 digest string of `data`. */
export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Writes `data` as a blob (one writer, one commit). */
export async function writeBlob(
  backend: Backend,
  data: Uint8Array | string,
  options?: { lease?: string; labels?: Record<string, string>; ref?: string },
): Promise<string> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const w = await backend.content.writer(options?.ref ?? `ref-${sha256(bytes).slice(7, 23)}-${Math.random()}`, {
    ...(options?.lease ? { lease: options.lease } : {}),
  });
  await w.write(bytes);
  return w.commit({ size: bytes.byteLength, expected: sha256(bytes), ...(options?.labels ? { labels: options.labels } : {}) });
}

/** Every item of an async iterable. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Concatenated bytes of a read. */
export async function readAll(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** Mounts `mounts`, runs `fn` on the mount point, always unmounts. */
export async function withMount<T>(backend: Backend, mounts: readonly Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const m = await backend.mounter.mount(mounts);
  try {
    return await fn(m.target);
  } finally {
    await m.unmount();
  }
}

/** Asserts that `p` rejects with an error of class `cls` whose message contains every `parts`. */
export async function rejectsWith(p: Promise<unknown>, cls: abstract new (...args: never[]) => Error, ...parts: string[]): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${String(err)}`, { cause: err });
    for (const part of parts) {
      if (!err.message.includes(part)) throw new Error(`expected message of ${cls.name} to contain ${JSON.stringify(part)}: ${err.message}`);
    }
    return err;
  }
  throw new Error(`expected rejection with ${cls.name}`);
}
