/**
 * The client's half of a build over the daemon: reads the context and Dockerfile with this process's
 * rights and streams them, replays the daemon's progress on the caller's Progress, and writes the
 * `output` archive the daemon streams back (the file appears only once complete).
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ErrInvalidArgument, ErrNotFound, ErrUnavailable } from '@buildcache/errdefs';
import type { BuildRequest, Vertex } from '@buildcache/frontend';
import { writeFileWhole } from '@buildcache/sys';
import { messages } from './chunks.js';
import { contextTar } from './context-tar.js';
import type { WireBuildStart } from './operation-service.js';

/** A build over the daemon: the frontend's request, paths on the client's side (remote caches are not sent). */
export type RemoteBuildRequest = Omit<BuildRequest, 'cacheFrom' | 'cacheTo'>;

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
};

/** Runs `req` through `call` (the Build call, given the client's messages); see the file's comment. */
export async function remoteBuild(call: (input: AsyncIterable<object>) => AsyncIterable<Event>, req: RemoteBuildRequest): Promise<RemoteBuildResult> {
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
  const start: WireBuildStart = {
    ...(dockerfile ? { dockerfile } : {}), ...(req.tag ? { tag: req.tag } : {}), buildArgs: { ...req.buildArgs }, noCache: Boolean(req.noCache), output: req.output !== undefined,
  };
  const vertices = new Map<number, Vertex>();
  const got: { result?: NonNullable<Event['result']> } = {};
  // The output archive's chunks, replaying progress on the way; ends at the result (no result: thrown, so no file appears).
  async function* output(): AsyncGenerator<Buffer> {
    for await (const e of call(messages({ start }, 'context', contextTar(context)))) {
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
  } finally {
    req.progress?.close();
  }
  const r = got.result!;
  return { digest: r.digest, warnings: r.warnings, executed: r.executed, ...(r.record ? { record: r.record } : {}) };
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
