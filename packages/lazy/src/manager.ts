/**
 * The layer manager (stargz-snapshotter's, in process): resolves each remote layer once however
 * many callers ask at once, counts its users, forgets it a grace period after the last one left,
 * prefetches what comes before the prefetch landmark and fetches the rest in the background with
 * bounded concurrency, behind foreground reads.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import { pino, type Logger } from 'pino';
import { ErrNotEstargz } from '@buildcache/errdefs';
import { FlightGroup } from '@buildcache/cache';
import { EstargzReader, TOC_DIGEST_ANNOTATION } from '@buildcache/estargz';
import type { Descriptor } from '@buildcache/snapshot';
import { LazyLayer, type LayerState } from './layer.js';
import { Priority, SparseBlob, type RemoteSource } from './sparse-blob.js';

/** Options of a LayerManager. */
export interface LayerManagerOptions {
  /** Directory for the layers' local copies (created). */
  readonly dir: string;
  /** How long an unused layer is kept before it is forgotten (default 30 s). */
  readonly graceMs?: number;
  /** Background range requests in flight across all layers (default 2). */
  readonly backgroundConcurrency?: number;
  /** Size of one background range request (default 4 MiB). */
  readonly pieceSize?: number;
  /** Verify TOC digests against the layer annotation (default true; false also reads layers without one lazily). */
  readonly verify?: boolean;
  /** Start prefetch and background fetch on resolve (default true). */
  readonly background?: boolean;
  /** Largest TOC accepted (see `OpenOptions.maxTocSize`). */
  readonly maxTocSize?: number;
  readonly logger?: Logger;
}

/** How long `close` waits for the deletion of local copies. */
const CLOSE_WAIT_MS = 10_000;

/** Resolves remote layers once and shares them among users. */
export class LayerManager {
  private readonly layers = new Map<string, LazyLayer>();
  private readonly flight = new FlightGroup<LazyLayer>();
  /** Local copies of forgotten layers still being deleted, by digest. */
  private readonly disposing = new Map<string, Promise<void>>();
  private readonly limit: LimitFunction;
  private readonly priority = new Priority();
  private readonly logger: Logger;

  constructor(private readonly options: LayerManagerOptions) {
    this.limit = pLimit(options.backgroundConcurrency ?? 2);
    this.logger = options.logger ?? pino({ level: 'silent' });
  }

  /**
   * The layer `desc` of image `ref`, read through `remote`, with one use taken (give it back with
   * `release`). Concurrent calls for the same blob share one resolution. An eStargz layer (TOC
   * digest annotation, or any footer when verification is off) is read lazily; any other is
   * fetched whole on first read.
   */
  async use(ref: string, desc: Descriptor, remote: () => Promise<RemoteSource> | RemoteSource, options: { signal?: AbortSignal } = {}): Promise<LazyLayer> {
    let layer = this.layers.get(desc.digest);
    if (!layer) {
      layer = await this.flight.do(desc.digest, async (signal) => this.layers.get(desc.digest) ?? this.resolve(ref, desc, await remote(), signal), options);
    }
    layer.uses++;
    if (layer.forgetTimer) {
      clearTimeout(layer.forgetTimer);
      layer.forgetTimer = undefined;
    }
    return layer;
  }

  private async resolve(ref: string, desc: Descriptor, remote: RemoteSource, signal: AbortSignal): Promise<LazyLayer> {
    await mkdir(this.options.dir, { recursive: true });
    // a forgotten copy of the same blob is deleted first: its path is the one the new copy takes
    await this.disposing.get(desc.digest);
    const verify = this.options.verify ?? true;
    const tocDigest = desc.annotations?.[TOC_DIGEST_ANNOTATION];
    const blob = await SparseBlob.create(desc.digest, remote, join(this.options.dir, `${desc.digest.replace(':', '-')}.partial`), this.priority);
    let reader: EstargzReader | undefined;
    try {
      if (tocDigest !== undefined || !verify) {
        reader = await EstargzReader.open(blob, {
          name: desc.digest,
          verify,
          signal,
          ...(tocDigest !== undefined ? { tocDigest } : {}),
          ...(this.options.maxTocSize !== undefined ? { maxTocSize: this.options.maxTocSize } : {}),
        }).catch((err: unknown) => {
          if (err instanceof ErrNotEstargz && tocDigest === undefined) return undefined;
          throw err;
        });
      }
    } catch (err) {
      await blob.dispose();
      throw err;
    }
    const layer = new LazyLayer(desc, blob, reader, this.logger.child({ ref, digest: desc.digest }));
    this.layers.set(desc.digest, layer);
    this.logger.debug({ ref, digest: desc.digest, estargz: reader !== undefined }, 'layer resolved');
    if (this.options.background !== false && reader) void this.startBackground(layer);
    return layer;
  }

  /** Starts prefetch and background fetch of `layer` (no-ops when already started). */
  startBackground(layer: LazyLayer): Promise<void> {
    const done = layer.fetchAll(this.limit, this.options.pieceSize ?? 4 << 20);
    done.catch((err: unknown) => this.logger.warn({ err, digest: layer.digest }, 'background fetch failed'));
    return done;
  }

  /** Gives back one use of `layer`; it is forgotten `graceMs` after its last use went. */
  release(layer: LazyLayer): void {
    if (layer.uses <= 0) return;
    if (--layer.uses > 0) return;
    const grace = this.options.graceMs ?? 30_000;
    layer.forgetTimer = setTimeout(() => this.forget(layer), grace);
    layer.forgetTimer.unref();
  }

  /** Drops `layer` unless it was used again, and starts deleting its local copy (awaited by `close` and by a new resolve of the blob). */
  private forget(layer: LazyLayer): void {
    layer.forgetTimer = undefined;
    if (layer.uses > 0 || this.layers.get(layer.digest) !== layer) return;
    this.layers.delete(layer.digest);
    layer.stop.abort();
    const disposed: Promise<void> = layer.blob
      .dispose()
      .then(() => this.logger.debug({ digest: layer.digest }, 'layer forgotten'))
      .finally(() => {
        if (this.disposing.get(layer.digest) === disposed) this.disposing.delete(layer.digest);
      });
    this.disposing.set(layer.digest, disposed);
    // whoever awaits it sees a failure; none goes unhandled when no one does
    disposed.catch((err: unknown) => this.logger.warn({ err, digest: layer.digest }, 'could not delete the local copy of a forgotten layer'));
  }

  /** Whether the manager still holds the layer of `digest` (or is still deleting its local copy). */
  has(digest: string): boolean {
    return this.layers.has(digest) || this.disposing.has(digest);
  }

  /** The state of every layer held. */
  state(): LayerState[] {
    return [...this.layers.values()].map((l) => l.state());
  }

  /**
   * Forgets every layer at once (stopping background work and deleting local copies), and resolves
   * once every deletion is over, also those grace timers started before, so none runs after it
   * (the first failure is thrown). A deletion is local (close and remove one file); one still
   * running after `CLOSE_WAIT_MS` (a stuck disk) is logged and no longer waited for.
   */
  async close(): Promise<void> {
    for (const layer of [...this.layers.values()]) {
      if (layer.forgetTimer) clearTimeout(layer.forgetTimer);
      layer.uses = 0;
      this.forget(layer);
    }
    const deletions = [...this.disposing.entries()];
    if (deletions.length === 0) return;
    const bound = new AbortController();
    const settled = await Promise.race([
      Promise.allSettled(deletions.map(([, p]) => p)),
      sleep(CLOSE_WAIT_MS, undefined, { signal: bound.signal, ref: false }).then(() => undefined, () => undefined),
    ]).finally(() => bound.abort());
    if (!settled) {
      this.logger.warn({ digests: deletions.map(([d]) => d).filter((d) => this.disposing.has(d)) }, 'local copies of forgotten layers still being deleted at close');
      return;
    }
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
