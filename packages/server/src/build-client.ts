/**
 * The client's half of a build over the daemon: reads the context and Dockerfile with this process's
 * rights and streams them, replays the daemon's progress on the caller's Progress, and writes the
 * `output` archive the daemon streams back (the file appears only once complete). A failure on this
 * side aborts the call (BuildAbort) and waits for the daemon to clean up before it is thrown.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ErrInvalidArgument, ErrNotFound, ErrUnavailable } from '@buildcache/errdefs';
import type { BuildRequest, Vertex } from '@buildcache/frontend';
import { LocalStore, type CacheSpec } from '@buildcache/remotecache';
import { writeFileWhole } from '@buildcache/sys';
import {
  haveMessages, layoutOffer, Lookahead, receiveBlobs, storeBlob, toWireTarget, wantedBlob, type ArrivingBlob, type WireCacheBlob, type WireCacheWant,
} from './cache-layouts.js';
import { chunked } from './chunks.js';
import { contextTar } from './context-tar.js';
import type { WireBuildStart } from './operation-service.js';

/**
 * A build as the CLI asks for it, here or over the daemon: the frontend's request with paths on the
 * caller's side and the remote caches named by specs (`--cache-from`, `--cache-to`).
 */
export type RemoteBuildRequest = Omit<BuildRequest, 'cacheFrom' | 'cacheTo'> & {
  readonly cacheFrom?: readonly CacheSpec[];
  readonly cacheTo?: readonly CacheSpec[];
};

/** What a build over the daemon made. */
export interface RemoteBuildResult {
  /** The image's manifest digest. */
  readonly digest: string;
  readonly warnings: readonly string[];
  /** Steps that ran. */
  readonly executed: number;
  /** The record of the image's top layer. */
  readonly record?: string;
}

type Event = {
  vertex?: { id: number; kind: string; text: string };
  output?: Buffer;
  result?: { digest: string; warnings: string[]; executed: number; record: string };
  cache?: WireCacheBlob;
  want?: WireCacheWant;
};

/** A local `--cache-from` layout of this side and the blobs offered of it (digest → size). */
interface Offered {
  readonly store: LocalStore;
  readonly blobs: Map<string, number>;
}

/** How long a client that failed on its side waits, after BuildAbort, for the daemon to end the call (then it cancels it). */
const ABORT_WAIT_MS = 30_000;

/**
 * Runs `req` through `call` (the Build call, given the client's messages and a signal that cancels
 * it); see the file's comment. A local `--cache-from` layout's manifest (and the list of its blobs
 * this side holds) goes before the context, each blob only when the daemon asks for it; a local
 * `--cache-to` layout comes back before the result and is stored into its directory here. A failure
 * on this side (reading the context, writing a --cache-to directory or the --output file) sends
 * BuildAbort and waits (at most ABORT_WAIT_MS) for the daemon to end the call, which it does once the
 * call's scratch directory is gone; then that failure is thrown.
 */
export async function remoteBuild(call: (input: AsyncIterable<object>, signal: AbortSignal) => AsyncIterable<Event>, req: RemoteBuildRequest): Promise<RemoteBuildResult> {
  const context = resolve(req.context);
  if (!(await stat(context).then((s) => s.isDirectory(), () => false))) {
    throw new ErrInvalidArgument(`build context ${context} is not a directory`, { details: { path: context } });
  }
  let dockerfile: Buffer | undefined;
  if (req.dockerfile !== undefined) {
    const path = resolve(req.dockerfile);
    dockerfile = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      throw new ErrNotFound(`failed to read dockerfile: open ${path}: no such file or directory`, { details: { path } });
    });
  }
  const cacheFrom = req.cacheFrom ?? [];
  const cacheTo = req.cacheTo ?? [];
  const start: WireBuildStart = {
    ...(dockerfile ? { dockerfile } : {}), ...(req.tag ? { tag: req.tag } : {}), buildArgs: { ...req.buildArgs }, noCache: Boolean(req.noCache), output: req.output !== undefined,
    cacheFrom: cacheFrom.map(toWireTarget), cacheTo: cacheTo.map(toWireTarget),
  };
  const merge = new LayoutMerge(cacheTo);
  const vertices = new Map<number, Vertex>();
  const cancel = new AbortController();
  // This side's failure, if any: thrown rather than the daemon's answer to the abort.
  const local: { err?: unknown } = {};
  const outbox = new Outbox((err) => (local.err ??= err));
  // Whether the daemon ended the call (its status came).
  let ended = false;
  const offered = cacheFrom.map((c): Offered | undefined => (c.type === 'local' ? { store: new LocalStore(c.location, c.tag), blobs: new Map() } : undefined));
  outbox.push(opening(start, offered, cacheTo, context, outbox));
  const feed = outbox.messages();
  const events = new Lookahead(watched(call(feed, req.signal ? AbortSignal.any([req.signal, cancel.signal]) : cancel.signal), () => (ended = true))[Symbol.asyncIterator]());
  const got: { result?: NonNullable<Event['result']> } = {};
  // The output archive's chunks, storing cache blobs and replaying progress on the way; ends at the result (no result: thrown, so no file appears).
  async function* output(): AsyncGenerator<Buffer> {
    for (let e = await events.peek(); e !== undefined; e = await events.peek()) {
      if (e.cache) {
        await receiveBlobs(events, (m) => m.cache || undefined, (blob) => merge.take(blob));
        continue;
      }
      await events.next();
      if (e.want) {
        const from = offered[e.want.cache];
        if (!from) throw new ErrUnavailable(`Build: the daemon asked for a blob of cache source ${e.want.cache}, which is not a local layout`);
        outbox.push(wantedBlob(from.store, from.blobs, e.want));
      }
      if (e.vertex) replay(vertices, e.vertex, req);
      if (e.output) yield e.output;
      if (e.result) {
        got.result = e.result;
        return;
      }
    }
    throw new ErrUnavailable('Build: the daemon ended the call without a result');
  }
  try {
    if (req.output !== undefined) await writeFileWhole(req.output, output());
    else for await (const chunk of output()) void chunk; // none: the daemon sends output only when asked
  } catch (err) {
    if (!ended) {
      local.err ??= err;
      outbox.abort(err);
      // The daemon's status (its answer to the abort) or, past the bound, a cancel: nothing to keep of either.
      const timer = setTimeout(() => cancel.abort(local.err), ABORT_WAIT_MS);
      try {
        while (!(await events.next()).done);
      } catch {
        // the call's end
      } finally {
        clearTimeout(timer);
      }
    }
    throw local.err ?? err;
  } finally {
    outbox.close();
    await events.return();
    req.progress?.close();
  }
  const r = got.result!;
  return { digest: r.digest, warnings: [...r.warnings, ...merge.warnings], executed: r.executed, ...(r.record ? { record: r.record } : {}) };
}

/** `source`'s items; `onEnd` runs when it ends by itself or fails (not when its reader stops early). */
async function* watched<T>(source: AsyncIterable<T>, onEnd: () => void): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (err) {
    onEnd();
    throw err;
  }
  onEnd();
}

/**
 * The client's messages after the context, as they come up: the blobs the daemon asks for, each
 * sent whole in turn, and BuildAbort; they end when it is closed. A blob that cannot be read goes to
 * `failed` and BuildAbort follows instead.
 */
class Outbox {
  private readonly queue: (AsyncIterable<object> | Iterable<object>)[] = [];
  private closed = false;
  private wake: (() => void) | undefined;
  #aborting = false;

  constructor(private readonly failed: (err: unknown) => void) {}

  /** Whether BuildAbort was queued: the context stops. */
  get aborting(): boolean {
    return this.#aborting;
  }

  /** Queues `source`'s messages. */
  push(source: AsyncIterable<object> | Iterable<object>): void {
    if (this.closed) return;
    this.queue.push(source);
    this.wake?.();
  }

  /** Queues BuildAbort (naming `err`) as the last message. */
  abort(err: unknown): void {
    if (this.closed) return;
    this.#aborting = true;
    this.queue.push([abortMessage(err)]);
    this.close();
  }

  /** No more messages: the client's side half-closes after those queued. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *messages(): AsyncGenerator<object> {
    for (;;) {
      const source = this.queue.shift();
      if (source) {
        try {
          yield* source;
        } catch (err) {
          this.failed(err);
          this.#aborting = this.closed = true;
          this.queue.length = 0;
          yield abortMessage(err);
          return;
        }
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((res) => (this.wake = res));
      this.wake = undefined;
    }
  }
}

/** BuildAbort naming `err`. */
const abortMessage = (err: unknown): object => ({ abort: { reason: err instanceof Error ? err.message : String(err) } });

/**
 * The client's first messages of a build: start, what each local `--cache-to` directory holds, what
 * each local `--cache-from` layout offers (into `offered`) and its manifest, the context's tar (cut
 * short when the outbox aborts), then ContextEnd.
 */
async function* opening(
  start: WireBuildStart, offered: readonly (Offered | undefined)[], cacheTo: readonly CacheSpec[], context: string, outbox: Outbox,
): AsyncGenerator<object> {
  yield { start };
  for (const [i, c] of cacheTo.entries()) {
    if (c.type === 'local') for (const have of haveMessages(i, await new LocalStore(c.location, c.tag).blobs())) yield { have };
  }
  for (const [i, o] of offered.entries()) if (o) yield* layoutOffer(i, o.store, o.blobs);
  for await (const c of chunked(contextTar(context))) {
    if (outbox.aborting) return;
    yield { context: c };
  }
  yield { contextEnd: {} };
}

/** Stores what the daemon exported for each local `--cache-to` into its directory; an `ignore-error` target's failure becomes a warning. */
class LayoutMerge {
  readonly warnings: string[] = [];
  private readonly stores: (LocalStore | undefined)[];
  private readonly failed = new Set<number>();

  constructor(private readonly targets: readonly CacheSpec[]) {
    this.stores = targets.map((c) => (c.type === 'local' ? new LocalStore(c.location, c.tag) : undefined));
  }

  async take(blob: ArrivingBlob): Promise<void> {
    const store = this.stores[blob.cache];
    if (!store) throw new ErrUnavailable(`Build: the daemon sent a blob for cache target ${blob.cache}, which is not a local layout`);
    if (this.failed.has(blob.cache)) return;
    try {
      await storeBlob(store, blob);
    } catch (err) {
      if (!this.targets[blob.cache]!.ignoreError) throw err;
      this.failed.add(blob.cache);
      this.warnings.push(`cache export to ${store.name} failed: ${(err as Error).message}`);
    }
  }
}

/** Shows one of the daemon's progress events on the caller's Progress. */
function replay(vertices: Map<number, Vertex>, v: { id: number; kind: string; text: string }, req: RemoteBuildRequest): void {
  if (v.kind === 'start') {
    if (req.progress) vertices.set(v.id, req.progress.vertex(v.text));
    return;
  }
  const vertex = vertices.get(v.id);
  if (v.kind === 'log') vertex?.log(v.text);
  else if (v.kind === 'cached') vertex?.cached();
  else if (v.kind === 'done') vertex?.done();
  else if (v.kind === 'error') vertex?.error(v.text);
}
