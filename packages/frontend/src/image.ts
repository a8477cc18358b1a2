/**
 * The image a build produces: an OCI image config (the Dockerfile's Env, Cmd, Entrypoint,
 * WorkingDir, User, Labels and the layers' diff IDs) and manifest over the layer blobs of the final
 * record's chain, and their export as an OCI image layout tar that `ctr images import` and
 * `docker load` read.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { ImmutableRef } from '@buildcache/cache';
import type { ContentStore, Descriptor } from '@buildcache/snapshot';
import { writeFileWhole } from '@buildcache/sys';
import { PLATFORM, type ImageConfig } from './dockerfile/plan.js';

export const MEDIA_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_CONFIG = 'application/vnd.oci.image.config.v1+json';
const MEDIA_INDEX = 'application/vnd.oci.image.index.v1+json';

/** An image: its manifest and config (bytes and descriptors) and its layer descriptors. */
export interface BuiltImage {
  readonly manifest: Descriptor;
  readonly manifestBytes: Buffer;
  readonly config: Descriptor;
  readonly configBytes: Buffer;
  readonly layers: readonly Descriptor[];
}

function describe(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: 'sha256:' + createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
}

/** Builds the config and manifest of `top`'s chain (no layers for an empty `FROM scratch` image). */
export async function imageOf(top: ImmutableRef | undefined, config: ImageConfig): Promise<BuiltImage> {
  const remote = top ? await top.getRemote({ compression: 'gzip' }) : [];
  const layers = remote.map((d) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size }));
  const diffIDs = remote.map((d) => d.annotations?.['containerd.io/uncompressed'] ?? d.digest);
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: PLATFORM.architecture,
      os: PLATFORM.os,
      config: config,
      rootfs: { type: 'layers', diff_ids: diffIDs },
    }),
  );
  const configDesc = describe(MEDIA_CONFIG, configBytes);
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_MANIFEST, config: configDesc, layers }));
  return { manifest: describe(MEDIA_MANIFEST, manifestBytes), manifestBytes, config: configDesc, configBytes, layers };
}

/**
 * Writes `image` as an OCI image layout tar at `dest` (appearing only complete: `writeFileWhole`), layer
 * blobs streamed from `content`; `name` (e.g. `docker.io/library/app:latest`) is annotated on the
 * index so that `ctr images import` names the image.
 */
export async function exportOCIArchive(image: BuiltImage, content: ContentStore, dest: string, name?: string): Promise<void> {
  const tag = name?.includes(':') && !name.endsWith(']') ? name.slice(name.lastIndexOf(':') + 1) : 'latest';
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_INDEX,
      manifests: [
        {
          ...image.manifest,
          platform: PLATFORM,
          ...(name ? { annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag } } : {}),
        },
      ],
    }),
  );
  const pack = tar.pack();
  const written = writeFileWhole(dest, pack as AsyncIterable<Buffer>); // a tar-stream pack yields Buffers (typed unknown)
  written.catch(() => undefined); // awaited below; handled here so a write error meanwhile is not unhandled
  const header = { mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 };
  try {
    const file = (name: string, size: number, body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> =>
      pipeline(Readable.from(body), pack.entry({ ...header, name, size }));
    for (const name of ['blobs', 'blobs/sha256']) {
      await new Promise<void>((res, rej) => pack.entry({ ...header, name, type: 'directory', mode: 0o755 }, (err) => (err ? rej(err) : res())));
    }
    const blob = (d: Descriptor): string => `blobs/sha256/${d.digest.slice('sha256:'.length)}`;
    const seen = new Set<string>();
    for (const layer of image.layers) {
      if (seen.has(layer.digest)) continue;
      seen.add(layer.digest);
      await file(blob(layer), layer.size, content.read(layer.digest));
    }
    await file(blob(image.config), image.config.size, [image.configBytes]);
    await file(blob(image.manifest), image.manifest.size, [image.manifestBytes]);
    const layout = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await file('oci-layout', layout.length, [layout]);
    await file('index.json', index.length, [index]);
    pack.finalize();
    await written;
  } catch (err) {
    pack.destroy(err as Error); // the partial file goes with it
    await written.catch(() => undefined);
    throw err;
  }
}
