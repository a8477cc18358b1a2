/**
 * Executing one step that missed the cache: a new mutable record over the parent, mounted, written
 * (COPY, WORKDIR) or run (RUN), committed. A failed step's mutable record is released, so nothing
 * half-done is ever committed or keyed; a marker file names it while it exists, so that a killed
 * build's record is released by the next one.
 */
import { mkdir, readdir, rm, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheManager, ImmutableRef, MutableRef } from '@buildcache/cache';
import type { PatternMatcher } from '@buildcache/contenthash';
import { ErrNotFound, ErrRunFailed } from '@buildcache/errdefs';
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

/** Releases the mutable records a killed build left (named by markers); run before building. */
export async function releaseLeftSteps(cache: CacheManager, markers: string): Promise<number> {
  await mkdir(markers, { recursive: true });
  let n = 0;
  for (const id of await readdir(markers)) {
    try {
      const ref = await cache.getMutable(id);
      await ref.release();
      n++;
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
    }
    await rm(join(markers, id), { force: true });
  }
  return n;
}

/**
 * Runs `step` over `parent`, commits it and hands the record to `keep` (which keys it) before the
 * marker goes, so a crash anywhere leaves the record either keyed or released by the next build.
 * Resolves with the committed record (the caller releases it).
 */
export async function executeStep(
  sc: StepContext,
  step: Step,
  parent: ImmutableRef | undefined,
  sources: readonly CopySource[],
  vertex: Vertex,
  keep: (ref: ImmutableRef) => Promise<void>,
): Promise<ImmutableRef> {
  const ref: MutableRef = await sc.cache.new(parent, { description: step.text });
  const marker = join(sc.markers, ref.id);
  let committed = false;
  try {
    await writeFile(marker, '');
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
    if (!committed) await ref.release();
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
