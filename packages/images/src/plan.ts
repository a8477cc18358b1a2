/**
 * What an archive asks to import, read from its spooled files and checked before anything is
 * registered: each image's config (its digest is the image ID), names, and layers in chain order
 * (from the config's `rootfs.diff_ids`), each with the blob it comes from. An OCI image layout is read
 * from `index.json`; a `docker save` archive from `manifest.json` (preferred when both are present, as
 * `docker load` does).
 */
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import { chainIDs } from '@buildcache/cache';
import { BuildcacheError, ErrCorruptLayer, ErrDiffIDMismatch, ErrDigestMismatch, ErrInvalidImage, ErrLayerCycle, ErrMissingBlob, ErrNotAnImageArchive } from '@buildcache/errdefs';
import { decompress, detectCompression } from '@buildcache/snapshot';
import { PoolSha256 } from '@buildcache/sys';
import { normalize, type Spool, type SpooledFile } from './archive.js';
import { MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_OCI_INDEX, NAME_ANNOTATION, REF_ANNOTATION } from './media.js';

/** A blob descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Record<string, string>;
}

/** One layer to register. */
export interface LayerPlan {
  readonly file: SpooledFile;
  readonly descriptor: Descriptor;
  readonly diffID: string;
  readonly chainID: string;
}

/** One image to record. */
export interface ImagePlan {
  /** The config's digest: the image ID. */
  readonly id: string;
  readonly config: Buffer;
  /** The original manifest (OCI layouts), kept for an identical export when its layers are uncompressed. */
  readonly manifest?: Buffer;
  readonly names: string[];
  readonly layers: LayerPlan[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function json<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new ErrInvalidImage(`${what} is not valid JSON (${(err as Error).message})`, { cause: err, details: { path: what } });
  }
}

/** The config's diff IDs, checked against the number of layers. */
function diffIDsOf(config: Buffer, id: string, layerCount: number): string[] {
  const c = json<{ rootfs?: { type?: string; diff_ids?: unknown } }>(config, `config ${id}`);
  const ids = c.rootfs?.diff_ids;
  if (c.rootfs?.type !== 'layers' || !Array.isArray(ids) || !ids.every((d) => typeof d === 'string' && DIGEST.test(d))) {
    throw new ErrInvalidImage(`config ${id} has no rootfs of type "layers" with sha256 diff_ids`, { details: { digest: id } });
  }
  if (ids.length !== layerCount) {
    throw new ErrDiffIDMismatch(`config ${id} lists ${ids.length} diff_ids but its manifest has ${layerCount} layers`, { details: { digest: id } });
  }
  return ids as string[];
}

function layerPlans(files: SpooledFile[], descriptors: Descriptor[], diffIDs: string[]): LayerPlan[] {
  const chains = chainIDs(diffIDs);
  return files.map((file, i) => ({ file, descriptor: descriptors[i]!, diffID: diffIDs[i]!, chainID: chains[i]! }));
}

/** The blob `desc` names, present and matching its digest and size. */
function blob(spool: Spool, desc: Descriptor, what: string): SpooledFile {
  if (typeof desc?.digest !== 'string' || !DIGEST.test(desc.digest)) {
    throw new ErrInvalidImage(`${what} has no sha256 digest (got ${JSON.stringify(desc?.digest)})`);
  }
  const f = spool.get(`blobs/sha256/${desc.digest.slice(7)}`);
  if (!f) throw new ErrMissingBlob(`${what} ${desc.digest} is not in the archive (no blobs/sha256/${desc.digest.slice(7)})`, { details: { digest: desc.digest } });
  if (f.digest !== desc.digest || (typeof desc.size === 'number' && f.size !== desc.size)) {
    throw new ErrDigestMismatch(`${what} blobs/sha256/${desc.digest.slice(7)} is ${f.digest} (${f.size} bytes), its descriptor says ${desc.digest} (${desc.size} bytes)`, {
      details: { digest: desc.digest },
    });
  }
  return f;
}

async function fromIndex(spool: Spool, indexBytes: Buffer): Promise<ImagePlan[]> {
  const index = json<{ manifests?: Descriptor[] }>(indexBytes, 'index.json');
  if (!Array.isArray(index.manifests)) throw new ErrInvalidImage('index.json has no manifests array');
  const byDigest = new Map<string, ImagePlan>();
  for (const desc of index.manifests) {
    if (desc.mediaType === MEDIA_TYPE_OCI_INDEX || desc.mediaType === 'application/vnd.docker.distribution.manifest.list.v2+json') {
      throw new ErrInvalidImage(`index.json names a nested image index ${desc.digest}; multi-platform images are not supported, export one platform`, { details: { digest: desc.digest } });
    }
    const name = desc.annotations?.[NAME_ANNOTATION] ?? desc.annotations?.[REF_ANNOTATION];
    const seen = byDigest.get(desc.digest);
    if (seen) {
      if (name !== undefined && !seen.names.includes(name)) seen.names.push(name);
      continue;
    }
    const manifestBytes = await readFile(blob(spool, desc, 'manifest').path);
    const m = json<{ config?: Descriptor; layers?: Descriptor[] }>(manifestBytes, `manifest ${desc.digest}`);
    if (!m.config || !Array.isArray(m.layers)) throw new ErrInvalidImage(`manifest ${desc.digest} has no config or layers`, { details: { digest: desc.digest } });
    const configFile = blob(spool, m.config, 'config');
    const config = await readFile(configFile.path);
    const layers = m.layers.map((l, i) => blob(spool, l, `layer ${i + 1} of manifest ${desc.digest}`));
    const plan: ImagePlan = {
      id: configFile.digest, config, manifest: manifestBytes, names: name === undefined ? [] : [name],
      layers: layerPlans(layers, m.layers, diffIDsOf(config, configFile.digest, layers.length)),
    };
    byDigest.set(desc.digest, plan);
  }
  return [...byDigest.values()];
}

interface DockerManifest {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

/** Follows the legacy `<id>/json` parent links from `dir`; a loop is ErrLayerCycle. */
async function checkParents(spool: Spool, dir: string): Promise<void> {
  const seen = new Set<string>();
  for (let id: string | undefined = dir; id !== undefined; ) {
    if (seen.has(id)) throw new ErrLayerCycle(`the legacy parent links of layer ${dir} loop back to ${id}; the archive is corrupt`, { details: { id } });
    seen.add(id);
    const bytes = await spool.read(`${id}/json`);
    if (!bytes) return;
    const parent: string | undefined = json<{ parent?: string }>(bytes, `${id}/json`).parent;
    id = parent || undefined;
  }
}

async function fromDockerManifest(spool: Spool, bytes: Buffer): Promise<ImagePlan[]> {
  const list = json<DockerManifest[]>(bytes, 'manifest.json');
  if (!Array.isArray(list)) throw new ErrInvalidImage('manifest.json is not an array');
  const plans: ImagePlan[] = [];
  for (const [i, m] of list.entries()) {
    if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) throw new ErrInvalidImage(`manifest.json entry ${i + 1} has no Config or Layers`);
    const configFile = spool.get(m.Config);
    if (!configFile) throw new ErrMissingBlob(`config ${m.Config} named by manifest.json is not in the archive`, { details: { path: m.Config } });
    const dirs = new Set<string>();
    const files = m.Layers.map((p) => {
      const f = spool.get(p);
      if (!f) throw new ErrMissingBlob(`layer ${p} named by manifest.json is not in the archive`, { details: { path: p } });
      return f;
    });
    for (const p of m.Layers) {
      const n = normalize(p);
      if (!n.endsWith('/layer.tar')) continue;
      const dir = n.slice(0, -'/layer.tar'.length);
      if (dirs.has(dir)) throw new ErrLayerCycle(`manifest.json lists layer ${dir} twice; a legacy layer ID has one place in its chain`, { details: { id: dir } });
      dirs.add(dir);
      await checkParents(spool, dir);
    }
    const config = await readFile(configFile.path);
    const descriptors = files.map((f) => ({ mediaType: MEDIA_TYPE_DOCKER_LAYER, digest: f.digest, size: f.size }));
    plans.push({ id: configFile.digest, config, names: [...(m.RepoTags ?? [])], layers: layerPlans(files, descriptors, diffIDsOf(config, configFile.digest, files.length)) });
  }
  return plans;
}

/** The images an archive holds, checked (blobs present, digests, diff_ids count, parent links). */
export async function planImport(spool: Spool, what: string): Promise<ImagePlan[]> {
  const manifest = await spool.read('manifest.json');
  if (manifest) return fromDockerManifest(spool, manifest);
  const index = await spool.read('index.json');
  if (index) return fromIndex(spool, index);
  const repositories = await spool.read('repositories');
  if (repositories) {
    for (const name of spool.files.keys()) if (name.endsWith('/json')) await checkParents(spool, name.slice(0, -'/json'.length));
    throw new ErrNotAnImageArchive(`${what} is a legacy docker save archive (no manifest.json, Docker < 1.10), which is not supported; save it again with a newer Docker`);
  }
  throw new ErrNotAnImageArchive(`${what} has neither index.json (OCI image layout) nor manifest.json (docker save); give an image archive`, { details: { path: what } });
}

/** The first bytes of `path` (enough for `detectCompression`). */
async function headOf(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(4), 0, 4, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Compressed layer files are read in chunks this large (each one thread-pool job of the decompressor). */
const READ_CHUNK = 1 << 20;

/**
 * A layer file's diff ID: its own digest (hashed by the spool) when it is not compressed, else the
 * sha256 of its decompressed bytes, hashed on the thread pool (the main thread only passes chunks).
 */
async function diffIDOf(file: SpooledFile): Promise<string> {
  if (detectCompression(await headOf(file.path)) === 'uncompressed') return file.digest;
  const hash = new PoolSha256();
  try {
    for await (const c of decompress(createReadStream(file.path, { highWaterMark: READ_CHUNK }), 'auto')) await hash.update(c);
  } catch (err) {
    if (err instanceof BuildcacheError) throw err;
    throw new ErrCorruptLayer(`layer ${file.digest} cannot be decompressed (${(err as Error).message})`, { cause: err, details: { digest: file.digest } });
  }
  return `sha256:${await hash.digest()}`;
}

/** Checks that each layer not in `known` (chain IDs) uncompresses to its config's diff ID. */
export async function verifyDiffIDs(plans: readonly ImagePlan[], known: ReadonlySet<string>): Promise<void> {
  const limit = pLimit(2);
  const todo = new Map<string, LayerPlan>();
  for (const p of plans) for (const l of p.layers) if (!known.has(l.chainID)) todo.set(l.file.path, l);
  await Promise.all([...todo.values()].map((l) => limit(async () => {
    const got = await diffIDOf(l.file);
    if (got !== l.diffID) {
      throw new ErrDiffIDMismatch(`layer ${l.descriptor.digest} uncompresses to ${got}, but the config's diff_id for it is ${l.diffID}`, {
        details: { digest: l.descriptor.digest, diffID: l.diffID },
      });
    }
  })));
}
