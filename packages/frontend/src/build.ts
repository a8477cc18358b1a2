/**
 * The build frontend: a Dockerfile over the cache. Each step's cache key is its operation key (the
 * instruction with the env, args, user, workdir and platform in effect) over its inputs — the
 * parent step's result key and, for COPY, the content checksum of its sources. A key found in the
 * cache reuses its record and runs nothing; a miss executes the step (RUN with runc) and records
 * the result under its key. The last record's chain becomes an OCI image.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { resultKey, type CacheManager, type ImmutableRef } from '@buildcache/cache';
import { checksumDir, PatternMatcher, readDockerignore } from '@buildcache/contenthash';
import { ErrInvalidArgument, ErrNeedsRemoteProvider, ErrNotFound, BuildcacheError } from '@buildcache/errdefs';
import type { ContentStore } from '@buildcache/snapshot';
import type { CacheStore, ExportedCache, ImportedCache } from '@buildcache/remotecache';
import { fullName, type ImageStore } from '@buildcache/images';
import { resolveBase, type Base, type RegistryAccess } from './base.js';
import { parseDockerfile } from './dockerfile/parse.js';
import { digestOf, fromLine, planSteps } from './dockerfile/plan.js';
import { resolveSources, type CopySource } from './copy.js';
import { exportOCIArchive, imageOf, type BuiltImage } from './image.js';
import { createProgress, type Progress, type Vertex } from './progress.js';
import { exportCaches, importCaches, remoteResult, type CacheExport, type KeyedStep } from './remote-cache.js';
import { Runc } from './runc.js';
import { executeStep, releaseLeftSteps, type StepContext } from './steps.js';
import type { Step } from './dockerfile/plan.js';
import { migrateTags } from './migrate-tags.js';

/** Where the frontend keeps its state and which runtime it runs. */
export interface FrontendOptions {
  readonly cache: CacheManager;
  /** The backend's content store (layer blobs are read from it for export). */
  readonly content: ContentStore;
  /** The frontend's own directory (e.g. `<cache root>/frontend`): runc state, bundles, step markers. */
  readonly root: string;
  /** The runc binary (default `runc` on PATH). */
  readonly runtime?: string;
  readonly logger?: Logger;
  /**
   * The image store: `FROM NAME` finds imported images and earlier builds' (`tag`) in it, and a
   * build with `tag` records its image there (required for `tag`).
   */
  readonly images?: ImageStore;
  /** A registry client and layer manager: `FROM` pulls an image that is not in the image store from its registry, lazily. */
  readonly registry?: RegistryAccess;
}

/** One build. */
export interface BuildRequest {
  /** The build context directory. */
  readonly context: string;
  /** The Dockerfile (default `<context>/Dockerfile`). */
  readonly dockerfile?: string;
  /** Name the image (`-t`): recorded in the image store (`images`, `export`), and a later `FROM NAME` builds on it. */
  readonly tag?: string;
  /** Run every step, looking nothing up (results are still recorded). */
  readonly noCache?: boolean;
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** Write the image as an OCI layout tar here (`ctr images import`, `docker load`). */
  readonly output?: string;
  readonly progress?: Progress;
  readonly signal?: AbortSignal;
  /** Remote caches whose results count as hits (`--cache-from`); a hit is fetched only when mounted. */
  readonly cacheFrom?: readonly CacheStore[];
  /** Where to export this build's cache afterwards (`--cache-to`). */
  readonly cacheTo?: readonly CacheExport[];
}

/** One step of a build: whether it came from the cache, its key parts and its result record when this machine has it. */
export interface BuiltStep extends KeyedStep {
  readonly text: string;
  readonly cached: boolean;
}

/** What a build did and made. */
export interface BuildResult {
  /** The image's manifest digest. */
  readonly digest: string;
  readonly image: BuiltImage;
  /** The record of the image's top layer (none for an image without layers); `cache.get` it to look inside. */
  readonly record?: string;
  /** With `tag`: the image's ID in the image store (its config digest there, diff IDs from the layer store). */
  readonly imageId?: string;
  /** Each step and whether it came from the cache. */
  readonly steps: readonly BuiltStep[];
  /** What each `cacheTo` export stored. */
  readonly cacheExports: readonly ExportedCache[];
  /** Steps that ran. */
  readonly executed: number;
  readonly warnings: readonly string[];
}

/** The directories under the frontend root. */
function layout(root: string): { runc: string; bundles: string; markers: string; tags: string } {
  return { runc: join(root, 'runc'), bundles: join(root, 'bundles'), markers: join(root, 'steps'), tags: join(root, 'images') };
}

/** Builds Dockerfiles over one cache. */
export class Frontend {
  private readonly runc: Runc;
  private readonly dirs: ReturnType<typeof layout>;

  private constructor(private readonly options: FrontendOptions) {
    this.dirs = layout(options.root);
    const logger = options.logger ?? pino({ level: 'silent' });
    this.runc = new Runc({ stateRoot: this.dirs.runc, bundleRoot: this.dirs.bundles, logger, ...(options.runtime ? { runtime: options.runtime } : {}) });
  }

  /**
   * Opens the frontend: finishes what a killed build left (containers, mounts, unkept step records).
   * Open the cache first: its lock keeps another process's build from being cleaned up as a leftover.
   */
  static async open(options: FrontendOptions): Promise<Frontend> {
    const fe = new Frontend(options);
    await fe.runc.cleanup();
    const released = await releaseLeftSteps(options.cache, fe.dirs.markers);
    if (released > 0) options.logger?.info({ released }, 'released the step records of a killed build');
    if (options.images) await migrateTags(fe.dirs.tags, options.cache, options.images, options.logger);
    return fe;
  }

  /** The container IDs of this frontend's runc root (empty unless a build is running). */
  containers(): Promise<string[]> {
    return this.runc.listIds();
  }

  /** Builds `req`; fails with a typed error (parse, COPY source, RUN exit) and then caches nothing of the failed step. */
  async build(req: BuildRequest): Promise<BuildResult> {
    const progress = req.progress ?? createProgress('quiet', process.stderr);
    const context = resolve(req.context);
    if (!(await stat(context).then((s) => s.isDirectory(), () => false))) {
      throw new ErrInvalidArgument(`build context ${context} is not a directory`, { details: { path: context } });
    }
    const tag = req.tag === undefined ? undefined : fullName(req.tag);
    if (tag !== undefined && !this.options.images) throw new ErrInvalidArgument(`cannot name the image ${tag}: the frontend was opened without an image store (FrontendOptions.images)`);
    const dockerfile = resolve(req.dockerfile ?? join(context, 'Dockerfile'));
    const buildArgs = new Map(Object.entries(req.buildArgs ?? {}));
    const load = progress.vertex('[internal] load build definition from ' + (req.dockerfile ?? 'Dockerfile'));
    let instructions;
    try {
      const text = await readFile(dockerfile, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        throw new ErrNotFound(`failed to read dockerfile: open ${dockerfile}: no such file or directory`, { details: { path: dockerfile } });
      });
      instructions = parseDockerfile(text);
      load.done();
    } catch (err) {
      load.error(messageOf(err));
      throw err;
    }
    const ignorePatterns = await readDockerignore(context);
    const ignore = new PatternMatcher(ignorePatterns);
    const from = fromLine(instructions, buildArgs);
    let base: Base | undefined;
    let parent: ImmutableRef | undefined;
    try {
      base = await resolveBase(this.options, from.image, (name) => progress.vertex(name));
      parent = base.ref?.clone();
      const plan = planSteps(instructions, base.config, buildArgs);
      const warnings: string[] = plan.unusedArgs.length ? [`one or more build-args [${plan.unusedArgs.join(' ')}] were not consumed`] : [];
      const total = plan.steps.length + (base.key ? 1 : 0);
      const offset = base.key ? 1 : 0;
      const sc: StepContext = { cache: this.options.cache, runc: this.runc, context, ignore, markers: this.dirs.markers, ...(req.signal ? { signal: req.signal } : {}) };
      const vertexOf = (i: number): Vertex => progress.vertex(`[${i + 1 + offset}/${total}] ${plan.steps[i]!.text}`);
      const imported = req.noCache || !req.cacheFrom?.length ? undefined : await importCaches(req.cacheFrom, progress, this.options.logger);
      for (const w of imported?.warnings ?? []) warnings.push(w);
      const steps: BuiltStep[] = [];
      let executed = 0;
      if (base.key) progress.vertex(`[1/${total}] ${from.text}`).done();
      const keyed = await stepKeys(plan.steps, base.key, context, ignore, ignorePatterns, vertexOf);
      const hit = req.noCache ? undefined : await this.deepestHit(keyed, imported, warnings);
      if (hit) {
        await parent?.release();
        parent = hit.ref;
      }
      const start = hit ? hit.index + 1 : 0;
      const wantsRecords = req.cacheTo?.some((t) => t.mode === 'max') ?? false;
      for (const [i, k] of keyed.entries()) {
        if (i >= start) break;
        let record = i === start - 1 ? parent?.id : undefined;
        if (record === undefined && wantsRecords) {
          const ref = await this.options.cache.keys.lookup(k.step.opKey, k.inputs, { noUpdateLastUsed: true });
          record = ref?.id;
          await ref?.release();
        }
        vertexOf(i).cached();
        steps.push({ text: k.step.text, cached: true, opKey: k.step.opKey, inputs: k.inputs, ...(record ? { record } : {}) });
      }
      for (const k of keyed.slice(start)) {
        const vertex = vertexOf(steps.length);
        try {
          const ref = await executeStep(sc, k.step, parent, k.sources, vertex, async (made) => {
            await this.options.cache.keys.record(k.step.opKey, k.inputs, made.id, { description: k.step.text });
          });
          executed++;
          await parent?.release();
          parent = ref;
          steps.push({ text: k.step.text, cached: false, opKey: k.step.opKey, inputs: k.inputs, record: ref.id });
          vertex.done();
        } catch (err) {
          vertex.error(messageOf(err));
          throw err;
        }
      }
      const exporting = progress.vertex('exporting to image');
      const image = await imageOf(parent, plan.config);
      exporting.log(`writing image ${image.manifest.digest} done`);
      let imageId: string | undefined;
      if (tag !== undefined) {
        // the image store keeps whole layers: a lazily pulled base is fetched and unpacked here
        await parent?.extract();
        imageId = (await this.options.images!.add(parent, JSON.parse(image.configBytes.toString('utf8')) as Record<string, unknown>, [tag])).id;
        exporting.log(`naming to ${tag} done (image ${imageId})`);
      }
      if (req.output || req.cacheTo?.length) await base.fetch();
      if (req.output) await exportOCIArchive(image, this.options.content, req.output, tag);
      exporting.done();
      const cacheExports = await exportCaches(this.options.cache, this.options.content, steps, req.cacheTo ?? [], progress, warnings, this.options.logger);
      return { digest: image.manifest.digest, image, steps, executed, warnings, cacheExports, ...(parent ? { record: parent.id } : {}), ...(imageId ? { imageId } : {}) };
    } finally {
      await parent?.release();
      await base?.ref?.release();
      await base?.release();
      progress.close();
    }
  }

  /**
   * The last step whose result is cached — here, or in an imported cache (then as a lazy chain,
   * extracted now when later steps build on it) — as BuildKit loads only the deepest hit. A lazy
   * local result that cannot be unpacked is a miss; a remote hit whose layers cannot be fetched or
   * do not match their diffIDs is dropped with a warning and the search starts again without the
   * imported caches.
   */
  private async deepestHit(keyed: readonly KeyedInput[], imported: ImportedCache | undefined, warnings: string[]): Promise<{ index: number; ref: ImmutableRef } | undefined> {
    const cache = this.options.cache;
    const last = keyed.length - 1;
    for (let i = last; i >= 0; i--) {
      const k = keyed[i]!;
      // A lazy local result (recorded from an earlier remote hit) whose blobs no imported cache provides is a miss.
      const local = await cache.keys.lookup(k.step.opKey, k.inputs, imported ? { descHandlers: imported.handlers } : {}).catch((err: unknown) => {
        if (err instanceof ErrNeedsRemoteProvider) return undefined;
        throw err;
      });
      if (local) {
        // A lazy local result (from an earlier remote hit) is usable below later steps only if it can be unpacked.
        if (i === last || local.info().extracted || (await local.extract().then(() => true, () => false))) return { index: i, ref: local };
        await local.release();
        continue;
      }
      if (!imported) continue;
      let ref: ImmutableRef | undefined;
      try {
        ref = await remoteResult(cache, imported, resultKey(k.step.opKey, k.inputs), k.step.text);
        if (ref && i < last) await ref.extract();
      } catch (err) {
        await ref?.release();
        warnings.push(`cache from ${imported.name}: the result of "${k.step.text}" cannot be used (${messageOf(err)}); building without the imported cache`);
        this.options.logger?.warn({ err, step: k.step.text }, 'imported cache result unusable');
        return this.deepestHit(keyed, undefined, warnings);
      }
      if (ref) {
        try {
          await this.keepRemoteKeys(keyed.slice(0, i), imported);
          await cache.keys.record(k.step.opKey, k.inputs, ref.id, { description: k.step.text, descHandlers: imported.handlers });
        } catch (err) {
          await ref.release();
          throw err;
        }
        return { index: i, ref };
      }
    }
    return undefined;
  }

  /** Records here the keys of `steps` (those below a remote hit) that the imported cache has results for (lazy records: nothing is fetched). */
  private async keepRemoteKeys(steps: readonly KeyedInput[], imported: ImportedCache): Promise<void> {
    const cache = this.options.cache;
    for (const k of steps) {
      const ref = await remoteResult(cache, imported, resultKey(k.step.opKey, k.inputs), k.step.text);
      if (!ref) continue;
      try {
        await cache.keys.record(k.step.opKey, k.inputs, ref.id, { description: k.step.text, descHandlers: imported.handlers });
      } finally {
        await ref.release();
      }
    }
  }
}

/** A step with the inputs of its cache key and, for COPY, its resolved sources. */
interface KeyedInput {
  readonly step: Step;
  readonly inputs: readonly string[];
  readonly sources: readonly CopySource[];
}

/**
 * The cache-key inputs of every step, before any runs: the parent's result key and, for COPY, the
 * checksum of its sources (a missing source fails on that step's progress line).
 */
async function stepKeys(
  planned: readonly Step[],
  baseKey: string | undefined,
  context: string,
  ignore: PatternMatcher,
  ignorePatterns: string[],
  vertexOf: (i: number) => Vertex,
): Promise<KeyedInput[]> {
  const out: KeyedInput[] = [];
  let parentKey = baseKey;
  for (const [i, step] of planned.entries()) {
    const inputs = parentKey ? [parentKey] : [];
    let sources: CopySource[] = [];
    if (step.kind === 'copy') {
      try {
        for (const pattern of step.sources) sources.push(...(await resolveSources(context, pattern, ignore)));
        sources = dedupe(sources);
        inputs.push(await sourcesChecksum(context, sources, ignorePatterns));
      } catch (err) {
        vertexOf(i).error(messageOf(err));
        throw err;
      }
    }
    out.push({ step, inputs, sources });
    parentKey = resultKey(step.opKey, inputs);
  }
  return out;
}

/** The content checksum of a COPY's sources (one source: its own checksum; several: a digest of the list). */
async function sourcesChecksum(context: string, sources: readonly CopySource[], dockerignore: string[]): Promise<string> {
  const sums = await Promise.all(sources.map(async (s) => [s.rel, await checksumDir(context, { path: s.rel, dockerignore })]));
  return sums.length === 1 ? sums[0]![1]! : digestOf(sums);
}

function dedupe(sources: CopySource[]): CopySource[] {
  const seen = new Set<string>();
  return sources.filter((s) => !seen.has(s.rel) && seen.add(s.rel));
}

function messageOf(err: unknown): string {
  return err instanceof BuildcacheError || err instanceof Error ? err.message.split('\n')[0]! : String(err);
}
