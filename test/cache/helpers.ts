/** Opening a cache manager over a test backend, and small file helpers for layers. */
import { readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { CacheManager, type Backend, type CacheManagerOptions, type ImmutableRef, type MutableRef } from '@buildcache/cache';
import type { BackendKind, TestBackend } from '../support/backends.js';
import { writeSyntheticRecords } from '../support/synthetic.js';

/**
 * A manager on a fresh backend; `reopen()` closes and opens both again on the same state, running
 * `whileClosed` (e.g. another process using them) in between.
 */
export interface TestCache {
  cache: CacheManager;
  readonly tb: TestBackend;
  reopen(whileClosed?: () => Promise<void>): Promise<CacheManager>;
  close(): Promise<void>;
}

/** The op key the crash worker's `keys` workload records. */
export const CRASH_KEY_OP = 'sha256:' + 'ab'.repeat(32);

/** Opens a manager on a new backend of `kind`; `prepare` runs on its root first (nothing open there yet). */
export async function openTestCache(
  kind: BackendKind,
  extra: Partial<CacheManagerOptions> = {},
  prepare?: (root: string) => Promise<void>,
): Promise<TestCache> {
  const tb = await kind.open();
  const root = join(tb.dir, 'cache');
  try {
    await prepare?.(root);
  } catch (err) {
    await tb.close();
    throw err;
  }
  const open = (): Promise<CacheManager> =>
    CacheManager.open({ root, backend: tb.backend, logger: pino({ level: 'silent' }), ...extra });
  const t: TestCache = {
    cache: await open(),
    tb,
    async reopen(whileClosed) {
      await t.cache.close();
      await tb.backend.close();
      await whileClosed?.();
      await tb.reopen();
      t.cache = await open();
      return t.cache;
    },
    async close() {
      await t.cache.close().catch(() => undefined);
      await tb.close();
    },
  };
  return t;
}

/** Opens a manager on a new backend of `kind` over `count` synthetic records (support/synthetic.ts) written before it opens. */
export function openSyntheticCache(kind: BackendKind, count: number): Promise<TestCache> {
  return openTestCache(kind, {}, (root) => writeSyntheticRecords(join(root, 'metadata'), count));
}

/** Writes files (path → content; null deletes) into a mutable ref through a real mount. */
export async function writeFiles(ref: MutableRef, files: Record<string, string | null>): Promise<void> {
  const m = await ref.mount();
  try {
    for (const [path, content] of Object.entries(files)) {
      const p = join(m.target, path);
      if (content === null) await rm(p, { recursive: true, force: true });
      else {
        await mkdir(join(p, '..'), { recursive: true });
        await writeFile(p, content);
      }
    }
  } finally {
    await m.unmount();
  }
}

/** Reads a file of a ref through a real read-only mount (undefined when absent). */
export async function readFileOf(ref: ImmutableRef | MutableRef, path: string): Promise<string | undefined> {
  const m = await ref.mount({ readonly: true });
  try {
    return await readFile(join(m.target, path), 'utf8').catch(() => undefined);
  } finally {
    await m.unmount();
  }
}

/** Counts entries of diskUsage() by in-use state, like BuildKit's checkDiskUsage. */
export async function usageCounts(cache: CacheManager): Promise<{ inUse: number; unused: number }> {
  let inUse = 0;
  let unused = 0;
  for await (const u of cache.diskUsage()) {
    if (u.inUse) inUse++;
    else unused++;
  }
  return { inUse, unused };
}

/** Waits (bounded) until the restarted daemon answers this backend's client again. */
export async function untilAnswering(backend: Backend): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await backend.leases.list();
      return;
    } catch (err) {
      if (i >= 100) throw err;
      await sleep(100);
    }
  }
}
