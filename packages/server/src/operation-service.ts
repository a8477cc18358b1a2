/**
 * The CLI's operations on buildcache's own service, over the daemon's Workspace: Build (the context
 * and local cache layouts streamed from the client into a private scratch directory, progress, local
 * cache exports and the result streamed back), Pull, Push, Cat, Import (the archive streamed from the
 * client), Export (the archive streamed back), Images and Demo. Cancelling a call aborts its work and
 * removes its scratch directory.
 */
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { ErrCorruptLayer, ErrDigestMismatch, ErrInvalidArgument } from '@buildcache/errdefs';
import type { Progress } from '@buildcache/frontend';
import type { ExportFormat, ImageInfo } from '@buildcache/images';
import { applyLayer, type Descriptor } from '@buildcache/snapshot';
import {
  addHave, ExportCopy, fromWireTarget, receiveBlobs, storeBlob, WantedCopy, type WireCacheBlob, type WireCacheHave, type WireCacheTarget,
} from './cache-layouts.js';
import { BuildInput, type Input } from './build-input.js';
import type { StreamScope } from './calls.js';
import { chunked } from './chunks.js';
import type { ServiceContext } from './context.js';
import type { Workspace } from './workspace.js';

/** BuildStart on the wire. */
export interface WireBuildStart {
  dockerfile?: Buffer;
  tag?: string;
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  output?: boolean;
  cacheFrom?: WireCacheTarget[];
  cacheTo?: WireCacheTarget[];
}

/** An image on the wire. */
const toWireImage = (i: ImageInfo): object => ({ id: i.id, names: i.names, layers: String(i.layers), size: String(i.size), created: i.created ?? '' });

/** Reads the first message of a client stream, which must carry `field`. */
async function first<K extends string, V>(it: AsyncIterator<Input<string, unknown>>, field: K, rpc: string): Promise<V> {
  const m = await it.next();
  const v = m.done ? undefined : (m.value as Input<K, V>);
  if (v?.input !== field || v[field] === undefined) throw new ErrInvalidArgument(`${rpc}: the first message must carry ${field}`);
  return v[field] as V;
}

/** The rest of a client stream, each message carrying bytes in `field`. */
async function* bytesOf(it: AsyncIterator<Input<string, unknown>>, field: string, rpc: string): AsyncGenerator<Buffer> {
  for (;;) {
    const m = await it.next();
    if (m.done) return;
    const v = m.value as Input<string, Buffer>;
    if (v.input !== field) throw new ErrInvalidArgument(`${rpc}: after the first message only ${field} may follow`);
    yield v[field]!;
  }
}

/** A Progress whose steps go to the client as VertexEvents, in order; `flush` waits for what was sent. */
function streamedProgress(scope: StreamScope): { progress: Progress; flush(): Promise<void> } {
  let chain: Promise<void> = Promise.resolve();
  let n = 0;
  const emit = (id: number, kind: string, text = ''): void => {
    chain = chain.then(() => scope.send({ vertex: { id, kind, text } })).catch(() => undefined);
  };
  return {
    progress: {
      vertex(name) {
        const id = ++n;
        emit(id, 'start', name);
        return { log: (l) => emit(id, 'log', l), cached: () => emit(id, 'cached'), done: () => emit(id, 'done'), error: (m) => emit(id, 'error', m) };
      },
      close() {},
    },
    flush: () => chain,
  };
}

/** Receives a build context tar into `dir`; a truncated or malformed stream is ErrInvalidArgument. */
async function receiveContext(chunks: AsyncIterable<Buffer>, dir: string, signal: AbortSignal): Promise<void> {
  await mkdir(dir, { mode: 0o700 });
  try {
    await applyLayer(chunks, dir, { compression: 'uncompressed', allowDevices: false, preserveOwners: false, signal });
  } catch (err) {
    if (!(err instanceof ErrCorruptLayer)) throw err;
    throw new ErrInvalidArgument(`build context: ${err.message}; the client's context stream stopped mid-way or is not a tar. Nothing was built`, { cause: err });
  }
}

/** Sends each chunk of `source` as a message whose `field` holds it (a Chunk message by default). */
async function sendChunks(source: AsyncIterable<Uint8Array>, scope: StreamScope, field = 'data'): Promise<void> {
  for await (const c of chunked(source)) await scope.send({ [field]: c });
}

/**
 * A build: start; what the client's local `--cache-to` directories hold and its `--cache-from`
 * layouts offer; those layouts' manifests, copied into the scratch directory (a blob is asked for
 * when first read, see WantedCopy); the context; then the build, whose local `--cache-to`
 * exports go to copies streamed back before the result. A BuildAbort from the client stops it all
 * (see BuildInput); the call then ends once the scratch directory is gone.
 */
async function build(ws: Workspace, stream: AsyncIterable<Input<string, unknown>>, callScope: StreamScope): Promise<void> {
  const input = new BuildInput(stream, callScope.signal);
  // Nothing more goes to a client that aborted.
  const scope: StreamScope = {
    signal: input.signal,
    send: async (m) => {
      input.signal.throwIfAborted();
      await callScope.send(m);
    },
  };
  const start = await first<'start', WireBuildStart>(input, 'start', 'Build');
  const cacheFrom = (start.cacheFrom ?? []).map((t) => fromWireTarget(t, 'from'));
  const cacheTo = (start.cacheTo ?? []).map((t) => fromWireTarget(t, 'to'));
  // What the client's local --cache-to directories hold and its --cache-from layouts offer, in as many messages as it takes.
  const have = cacheTo.map(() => new Map<string, number>());
  const offered = cacheFrom.map(() => new Map<string, number>());
  for (let m = await input.peek(); m?.input === 'have'; m = await input.peek()) {
    const list = ((await input.next()).value as Input<'have', WireCacheHave>).have!;
    const [targets, lists, name] = list.from ? [cacheFrom, offered, 'cacheFrom'] : [cacheTo, have, 'cacheTo'];
    const into = targets[list.cache]?.type === 'local' ? lists[list.cache] : undefined;
    if (!into) throw new ErrInvalidArgument(`Build: a have list for ${name}[${list.cache}], which is not a local layout`);
    addHave(into, list);
  }
  // The result goes once the scratch directory is gone: a client that has it finds nothing left.
  const result = await ws.scratch(async (dir) => {
    // The blobs of --cache-from layouts come when first read: counted for the log.
    const received = { blobs: 0, bytes: 0, digests: [] as string[] };
    const want = (i: number) => (desc: Descriptor): Promise<void> => input.want(i, desc, () => scope.send({ want: { cache: i, digest: desc.digest, size: String(desc.size), mediaType: desc.mediaType } }));
    const copiesFrom = cacheFrom.map((c, i) => (c.type === 'local' ? new WantedCopy(join(dir, `cache-from-${i}`), c, offered[i]!, want(i)) : undefined));
    const copiesTo = cacheTo.map((spec, i) => (spec.type === 'local' ? new ExportCopy(join(dir, `cache-to-${i}`), spec, have[i]!) : undefined));
    await receiveBlobs(input, (m) => (m.input === 'cache' ? (m as Input<'cache', WireCacheBlob>).cache : undefined), async (blob) => {
      const copy = copiesFrom[blob.cache];
      if (!copy) throw new ErrInvalidArgument(`Build: a cache blob for cacheFrom[${blob.cache}], which is not a local layout`);
      await storeBlob(copy.copy, blob).catch((err: unknown) => {
        if (!(err instanceof ErrDigestMismatch)) throw err;
      });
    });
    const context = join(dir, 'context');
    await receiveContext(input.context(), context, scope.signal);
    await input.endOfContext(async (blob) => {
      received.blobs++;
      received.bytes += blob.desc.size;
      received.digests.push(blob.desc.digest);
      await storeBlob(copiesFrom[blob.cache]!.copy, blob);
    });
    let dockerfile: string | undefined;
    if (start.dockerfile?.length) await writeFile((dockerfile = join(dir, 'Dockerfile')), start.dockerfile, { mode: 0o600 });
    const output = start.output ? join(dir, 'image.tar') : undefined;
    const { progress, flush } = streamedProgress(scope);
    let built;
    try {
      built = await ws.build(
        {
          context, progress, signal: scope.signal, noCache: Boolean(start.noCache), buildArgs: start.buildArgs ?? {},
          ...(dockerfile ? { dockerfile } : {}), ...(start.tag ? { tag: start.tag } : {}), ...(output ? { output } : {}),
          cacheFrom, cacheTo,
        },
        (_spec, i, direction) => (direction === 'from' ? copiesFrom : copiesTo)[i]!,
      );
    } finally {
      await flush();
    }
    if (copiesFrom.some(Boolean)) ws.logger.info({ ...received }, 'cache-from blobs received from the client');
    scope.signal.throwIfAborted();
    if (output) await sendChunks(createReadStream(output), scope, 'output');
    for (const [i, copy] of copiesTo.entries()) if (copy) for await (const m of copy.messages(i)) await scope.send({ cache: m });
    return built;
  }).catch((err: unknown) => {
    // A build stopped by the client's abort fails its own way (a RUN killed): the abort is the reason.
    scope.signal.throwIfAborted();
    throw err;
  });
  await scope.send({ result: { digest: result.digest, warnings: result.warnings, executed: result.executed, record: result.record ?? '' } });
}

const FORMATS = new Set(['oci', 'docker']);

/** The handlers of the operations. */
export function operationService(ctx: ServiceContext): UntypedServiceImplementation {
  const { calls, workspace: ws } = ctx;
  return {
    Build: calls.duplex<Input<string, unknown>, object>('Cache/Build', (input, scope) => build(ws, input, scope)),
    Import: calls.duplex<Input<string, unknown>, object>('Cache/Import', async (input, scope) => {
      const it = input[Symbol.asyncIterator]();
      const what = await first<'what', string>(it, 'what', 'Import');
      const loaded = await ws.importArchive(bytesOf(it, 'data', 'Import'), what);
      await scope.send({ images: loaded.map(toWireImage) });
    }),
    Export: calls.stream<{ name: string; format: string }, object>('Cache/Export', async (req, scope) => {
      const format = req.format || 'oci';
      if (!FORMATS.has(format)) throw new ErrInvalidArgument(`--format: unknown archive format ${JSON.stringify(format)}; use oci or docker`);
      await sendChunks(ws.exportArchive(req.name, format as ExportFormat), scope);
    }),
    Images: calls.stream<object, object>('Cache/Images', async (_req, scope) => {
      for (const i of await ws.images()) await scope.send(toWireImage(i));
    }),
    Pull: calls.stream<{ ref: string; lazy: boolean }, object>('Cache/Pull', async (req, scope) => {
      const report = await ws.pull(req.ref, { lazy: req.lazy, signal: scope.signal });
      for (const l of report.layers) await scope.send({ layer: { ...l, fetched: String(l.fetched), size: String(l.size) } });
      await scope.send({ done: report.top });
    }),
    Push: calls.stream<{ name: string; ref: string; compression: string }, object>('Cache/Push', async (req, scope) => {
      const report = await ws.push(req.name, req.ref, req.compression || undefined);
      for (const l of report.layers) await scope.send({ layer: { digest: l.digest, size: String(l.size) } });
      await scope.send({ done: report.digest });
    }),
    Cat: calls.stream<{ ref: string; path: string }, object>('Cache/Cat', (req, scope) => sendChunks(ws.cat(req.ref, req.path), scope)),
    Demo: calls.stream<object, object>('Cache/Demo', async (_req, scope) => {
      const r = await ws.demo();
      await scope.send({ base: r.base, app: r.app, layers: r.layers.map((l) => ({ ...l, size: String(l.size) })) });
    }),
  };
}
