/**
 * `openEmbeddedBackend`: the daemon-less backend under one root directory — snapshotter, content
 * store, leases and GC over one LevelDB (`<root>/meta`), plus the archive applier and differ.
 */
import pLimit from 'p-limit';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { ErrFailedPrecondition, ErrInvalidArgument, ErrPermissionDenied } from '@buildcache/errdefs';
import { assertSysLoaded } from '@buildcache/sys';
import { LocalMounter, mayMount } from '../mount.js';
import { msToNs, nowNs, strictlyIncreasing } from '../clock.js';
import type { Applier, Backend, Differ, GCStats } from '../types.js';
import { EmbeddedApplier, EmbeddedDiffer } from './archive/index.js';
import { EmbeddedContentStore } from './content.js';
import type { EmbeddedContext } from './context.js';
import { SYNC, keys, openMetaDB } from './db.js';
import { collectGarbage } from './gc.js';
import { EmbeddedLeaseManager } from './leases.js';
import { cleanupTempMounts } from '../mount-cleanup.js';
import { overlayHasIndexParam, probeOverlay } from './snapshot-layout.js';
import type { SnapshotDriver } from './snapshot-layout.js';
import { EmbeddedSnapshotter } from './snapshotter.js';

/** Options of `openEmbeddedBackend`. */
export interface EmbeddedBackendOptions {
  /** Directory holding everything (created if missing). */
  readonly root: string;
  /**
   * `auto` (default): the driver this root was created with, else overlayfs when running as root
   * with overlay available, else native. Forcing a driver other than the root's is refused.
   */
  readonly snapshotter?: 'auto' | SnapshotDriver;
  readonly logger?: Logger;
  /** Milliseconds since the epoch, for lease expiry, ingest staleness and times (tests inject one). */
  readonly clock?: () => number;
}

/** The embedded backend with its concrete stores exposed. */
export interface EmbeddedBackend extends Backend {
  readonly kind: 'embedded';
  readonly root: string;
  readonly snapshotter: EmbeddedSnapshotter;
  readonly content: EmbeddedContentStore;
  readonly leases: EmbeddedLeaseManager;
}

async function chooseDriver(ctx: EmbeddedContext, wanted: 'auto' | SnapshotDriver): Promise<SnapshotDriver> {
  const stored = (await ctx.db.get(keys.snapshotterMode)) as SnapshotDriver | undefined;
  if (stored !== undefined && wanted !== 'auto' && wanted !== stored) {
    throw new ErrInvalidArgument(`${ctx.root} holds ${stored} snapshots; it cannot be opened with the ${wanted} snapshotter`, {
      details: { path: ctx.root },
    });
  }
  let driver = stored ?? (wanted === 'auto' ? undefined : wanted);
  if (driver === undefined) driver = (await probeOverlay(ctx.root)) ? 'overlayfs' : 'native';
  else if (driver === 'overlayfs' && !(await probeOverlay(ctx.root))) {
    throw new ErrFailedPrecondition(`overlayfs is not usable under ${ctx.root} (needs root and overlay support)`, { details: { path: ctx.root } });
  }
  if (stored === undefined) await ctx.db.put(keys.snapshotterMode, driver, SYNC);
  return driver;
}

/**
 * Opens the embedded backend at `options.root`. A root another process has open gives
 * ErrStoreLocked. On open, leftover temp mounts, snapshot dirs without metadata and interrupted
 * removals are cleaned up. Where the `@buildcache/sys` addon does not load, fails with
 * ErrFailedPrecondition saying how to build it.
 */
export async function openEmbeddedBackend(options: EmbeddedBackendOptions): Promise<EmbeddedBackend> {
  assertSysLoaded();
  const root = resolve(options.root);
  if (options.snapshotter === 'overlayfs' && !mayMount()) {
    throw new ErrPermissionDenied(`the overlayfs snapshotter needs root (this process runs as uid ${process.geteuid?.()}); use the native snapshotter`, {
      details: { path: root },
    });
  }
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'snapshot/embedded' });
  await mkdir(root, { recursive: true });
  const db = await openMetaDB(join(root, 'meta'));
  try {
    const clock = options.clock;
    const clockNs = clock ? strictlyIncreasing(() => msToNs(clock())) : nowNs;
    const ctx: EmbeddedContext = { root, db, mutex: pLimit(1), clock: clock ?? Date.now, clockNs, logger };
    const mountsDir = join(root, 'mounts');
    await cleanupTempMounts(mountsDir, logger);
    const driver = await chooseDriver(ctx, options.snapshotter ?? 'auto');
    const indexOff = driver === 'overlayfs' && (await overlayHasIndexParam());
    const snapshotter = await EmbeddedSnapshotter.open(ctx, driver, indexOff);
    const content = new EmbeddedContentStore(ctx);
    const gc = (): Promise<GCStats> => collectGarbage(ctx, snapshotter, content);
    const leases = new EmbeddedLeaseManager(ctx, gc);
    const mounter = new LocalMounter(mountsDir);
    const applier: Applier = new EmbeddedApplier(content, mounter, { logger });
    const differ: Differ = new EmbeddedDiffer(content, mounter, { logger });
    logger.debug({ root, driver }, 'embedded backend open');
    return {
      kind: 'embedded',
      root,
      snapshotter,
      content,
      leases,
      applier,
      differ,
      mounter,
      garbageCollect: gc,
      close: async () => {
        await ctx.mutex(() => db.close());
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}
