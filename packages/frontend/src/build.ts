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
import { ErrInvalidArgument, ErrNotFound, BuildcacheError } from '@buildcache/errdefs';
import type { ContentStore } from '@buildcache/snapshot';
import { parseDockerfile } from './dockerfile/parse.js';
import { digestOf, fromLine, planSteps, SCRATCH_CONFIG, type ImageConfig } from './dockerfile/plan.js';
import { resolveSources, type CopySource } from './copy.js';
import { exportOCIArchive, imageOf, type BuiltImage } from './image.js';
import { createProgress, type Progress } from './progress.js';
import { Runc } from './runc.js';
import { executeStep, releaseLeftSteps, type StepContext } from './steps.js';
import { normalizeName, Tags } from './tags.js';

/** Where the frontend keeps its state and which runtime it runs. */
export interface FrontendOptions {
  readonly cache: CacheManager;
  /** The backend's content store (layer blobs are read from it for export). */
  readonly content: ContentStore;
  /** The frontend's own directory (e.g. `<cache root>/frontend`): runc state, bundles, step markers, names. */
  readonly root: string;
  /** The runc binary (default `runc` on PATH). */
  readonly runtime?: string;
  readonly logger?: Logger;
}

/** One build. */
export interface BuildRequest {
  /** The build context directory. */
  readonly context: string;
  /** The Dockerfile (default `<context>/Dockerfile`). */
  readonly dockerfile?: string;
  /** Name the image (`-t`); a later `FROM NAME` builds on it. */
  readonly tag?: string;
  /** Run every step, looking nothing up (results are still recorded). */
  readonly noCache?: boolean;
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** Write the image as an OCI layout tar here (`ctr images import`, `docker load`). */
  readonly output?: string;
  readonly progress?: Progress;
  readonly signal?: AbortSignal;
}

/** What a build did and made. */
export interface BuildResult {
  /** The image's manifest digest. */
  readonly digest: string;
  readonly image: BuiltImage;
  /** The record of the image's top layer (none for an image without layers); `cache.get` it to look inside. */
  readonly record?: string;
  /** Each step and whether it came from the cache. */
  readonly steps: readonly { readonly text: string; readonly cached: boolean }[];
  /** Steps that ran. */
  readonly executed: number;
  readonly warnings: readonly string[];
}

/** The directories under the frontend root. */
function layout(root: string): { runc: string; bundles: string; markers: string; images: string } {
  return { runc: join(root, 'runc'), bundles: join(root, 'bundles'), markers: join(root, 'steps'), images: join(root, 'images') };
}

/** Builds Dockerfiles over one cache. */
export class Frontend {
  private readonly runc: Runc;
  private readonly tags: Tags;
  private readonly dirs: ReturnType<typeof layout>;

  private constructor(private readonly options: FrontendOptions) {
    this.dirs = layout(options.root);
    const logger = options.logger ?? pino({ level: 'silent' });
    this.runc = new Runc({ stateRoot: this.dirs.runc, bundleRoot: this.dirs.bundles, logger, ...(options.runtime ? { runtime: options.runtime } : {}) });
    this.tags = new Tags(this.dirs.images);
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
    const base = await this.base(from.image);
    const plan = planSteps(instructions, base.config, buildArgs);
    const warnings = plan.unusedArgs.length ? [`one or more build-args [${plan.unusedArgs.join(' ')}] were not consumed`] : [];
    const total = plan.steps.length + (base.key ? 1 : 0);
    const offset = base.key ? 1 : 0;
    const sc: StepContext = { cache: this.options.cache, runc: this.runc, context, ignore, markers: this.dirs.markers, ...(req.signal ? { signal: req.signal } : {}) };
    let parent = base.ref;
    let parentKey = base.key;
    const steps: { text: string; cached: boolean }[] = [];
    let executed = 0;
    try {
      if (base.key) progress.vertex(`[1/${total}] ${from.text}`).done();
      for (const [i, step] of plan.steps.entries()) {
        const vertex = progress.vertex(`[${i + 1 + offset}/${total}] ${step.text}`);
        try {
          const inputs = parentKey ? [parentKey] : [];
          let sources: CopySource[] = [];
          if (step.kind === 'copy') {
            for (const pattern of step.sources) sources.push(...(await resolveSources(context, pattern, ignore)));
            sources = dedupe(sources);
            inputs.push(await sourcesChecksum(context, sources, ignorePatterns));
          }
          let ref = req.noCache ? undefined : await this.options.cache.keys.lookup(step.opKey, inputs);
          const cached = ref !== undefined;
          if (!ref) {
            ref = await executeStep(sc, step, parent, sources, vertex, async (made) => {
              await this.options.cache.keys.record(step.opKey, inputs, made.id, { description: step.text });
            });
            executed++;
          }
          parentKey = resultKey(step.opKey, inputs);
          await parent?.release();
          parent = ref;
          steps.push({ text: step.text, cached });
          if (cached) vertex.cached();
          else vertex.done();
        } catch (err) {
          vertex.error(messageOf(err));
          throw err;
        }
      }
      const exporting = progress.vertex('exporting to image');
      const image = await imageOf(parent, plan.config);
      exporting.log(`writing image ${image.manifest.digest} done`);
      if (req.tag) {
        const name = normalizeName(req.tag);
        await this.tags.set({ name, digest: image.manifest.digest, config: plan.config, ...(parent ? { record: parent.id } : {}) });
        exporting.log(`naming to ${name} done`);
      }
      if (req.output) await exportOCIArchive(image, this.options.content, req.output, req.tag ? normalizeName(req.tag) : undefined);
      exporting.done();
      return { digest: image.manifest.digest, image, steps, executed, warnings, ...(parent ? { record: parent.id } : {}) };
    } finally {
      await parent?.release();
      progress.close();
    }
  }

  /** The base of `FROM image`: nothing for scratch, else a named image this frontend built. */
  private async base(image: string): Promise<{ ref?: ImmutableRef; key?: string; config: ImageConfig }> {
    if (image === 'scratch') return { config: SCRATCH_CONFIG };
    const tagged = await this.tags.get(image);
    if (!tagged.record) return { key: tagged.digest, config: tagged.config };
    try {
      return { ref: await this.options.cache.get(tagged.record), key: tagged.digest, config: tagged.config };
    } catch (err) {
      if (!(err instanceof ErrNotFound)) throw err;
      throw new ErrNotFound(`image ${tagged.name}: its layers are no longer in the cache (pruned?); build it again`, { details: { id: tagged.name } });
    }
  }
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
