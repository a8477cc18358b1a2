/**
 * Executing one step that missed the cache: a new mutable record over the parent, mounted, written
 * (COPY, WORKDIR) or run (RUN), committed and keyed. A failed step's mutable record is released, so
 * nothing half-done is ever committed or keyed. A killed step leaves nothing either: a durable
 * marker `<markers>/<token>` is written before the record is created, the record's description
 * carries the token until the commit that writes its cache key (`cache.keys.record` replaces the
 * description in that same commit), and the next build drops every record still carrying the
 * token of a marker it finds. So the result and its key are one durable commit.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheManager, ImmutableRef, MutableRef } from '@buildcache/cache';
import type { PatternMatcher } from '@buildcache/contenthash';
import { ErrRunFailed } from '@buildcache/errdefs';
import { fsyncPath } from '@buildcache/sys';
import type { CopySource } from './copy.js';
import { copyInto } from './copy.js';
import type { Step } from './dockerfile/plan.js';
import type { Runc } from './runc.js';
import { scopedPath } from './scoped-path.js';
import type { Vertex } from './progress.js';

/** What a step needs besides itself. */
export interface StepContext {
  readonly cache: CacheManager;
  readonly runc: Runc;
  readonly context: string;
  readonly ignore: PatternMatcher;
  /** Directory of the markers of mutable records in use (`<frontend root>/steps`). */
  readonly markers: string;
  readonly signal?: AbortSignal;
}

/** Lines of output kept for a failed RUN's error. */
const LAST_LINES = 10;

/** The description a step's record has until its key is recorded: the step and its marker's token. */
function pendingDescription(text: string, token: string): string {
  return `${text} [step ${token}]`;
}

/** A marker's name: the token of a step's record. */
const TOKEN = /^[0-9a-f]{32}$/;
/** The name of a marker written before tokens: the ID of the step's mutable record (`newRecordId`). */
const OLD_MARKER = /^[a-z2-7]{26}$/;

/**
 * Drops the records a killed build left: those whose description still carries the token of a
 * marker (created, maybe committed or finalized, never keyed), or that an old-format marker names.
 * Run before building, with the cache open (its lock: no other build of this root is running).
 * Returns how many records went.
 */
export async function releaseLeftSteps(cache: CacheManager, markers: string): Promise<number> {
  await mkdir(markers, { recursive: true });
  let n = 0;
  for (const token of await readdir(markers)) {
    const ids: string[] = [];
    if (TOKEN.test(token)) {
      for await (const u of cache.diskUsage({ filters: [`description~=${token}`] })) ids.push(u.id);
    } else if (OLD_MARKER.test(token)) {
      // A build from before the tokens named its mutable record (never keyed while it exists: keying
      // finalizes it away); pruning it takes its committed, unkeyed twin with it.
      ids.push(token);
    }
    // one policy: its rounds delete a child, then the parent that frees
    if (ids.length) n += (await cache.prune([{ all: true, filters: [`id~=^(${ids.join('|')})$`] }])).deleted;
    await rm(join(markers, token), { force: true });
  }
  return n;
}

/**
 * Runs `step` over `parent`, commits it and hands the record to `keep`, which must key it with
 * `cache.keys.record` giving a description (that commit drops the marker's token from the record),
 * so a crash anywhere leaves the record either keyed or dropped by the next build. Resolves with
 * the committed record (the caller releases it).
 */
export async function executeStep(
  sc: StepContext,
  step: Step,
  parent: ImmutableRef | undefined,
  sources: readonly CopySource[],
  vertex: Vertex,
  keep: (ref: ImmutableRef) => Promise<void>,
): Promise<ImmutableRef> {
  const token = randomBytes(16).toString('hex');
  const marker = join(sc.markers, token);
  await writeFile(marker, '');
  await fsyncPath(marker);
  await fsyncPath(sc.markers);
  let ref: MutableRef | undefined;
  let committed = false;
  try {
    ref = await sc.cache.new(parent, { description: pendingDescription(step.text, token) });
    const mount = await ref.mount();
    try {
      await apply(sc, step, ref.id, mount.target, sources, vertex);
    } finally {
      await mount.unmount();
    }
    const imm = await ref.commit();
    committed = true;
    await keep(imm).catch(async (err: unknown) => {
      await imm.release();
      throw err;
    });
    return imm;
  } finally {
    if (!committed) await ref?.release();
    await rm(marker, { force: true });
  }
}

async function apply(sc: StepContext, step: Step, id: string, rootfs: string, sources: readonly CopySource[], vertex: Vertex): Promise<void> {
  switch (step.kind) {
    case 'copy':
      await copyInto(rootfs, { context: sc.context, sources, dest: step.dest, ignore: sc.ignore, ...(step.chown ? { chown: step.chown } : {}), ...(step.chmod !== undefined ? { chmod: step.chmod } : {}) });
      return;
    case 'workdir': {
      const host = await scopedPath(rootfs, step.path);
      const st = await lstat(host).catch(() => undefined);
      if (!st?.isDirectory()) await mkdir(host, { recursive: true, mode: 0o755 });
      return;
    }
    case 'run': {
      const tail: string[] = [];
      const code = await sc.runc.run(
        id,
        rootfs,
        step,
        (_stream, line) => {
          vertex.log(line);
          tail.push(line);
          if (tail.length > LAST_LINES) tail.shift();
        },
        sc.signal,
      );
      if (code !== 0) {
        const cmd = JSON.stringify(step.args.length === 3 && step.args[1] === '-c' ? step.args[2] : step.args);
        throw new ErrRunFailed(`Dockerfile:${step.line}: process ${cmd} did not complete successfully: exit code: ${code}` +
          (tail.length ? `\n${tail.join('\n')}` : ''), { details: { line: step.line, exitCode: code, output: tail } });
      }
      return;
    }
  }
}
