/**
 * The image a build produces: an OCI image config (the Dockerfile's Env, Cmd, Entrypoint,
 * WorkingDir, User, Labels and the layers' diff IDs) and manifest over the layer blobs of the final
 * record's chain, and their export as an OCI image layout tar that `ctr images import` and
 * `docker load` read.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { ImmutableRef } from '@buildcache/cache';
import type { ContentStore, Descriptor } from '@buildcache/snapshot';
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

/** A ustar header for a regular file or directory (names < 100 bytes, as an OCI layout's are). */
function tarHeader(name: string, size: number, dir: boolean): Buffer {
  const h = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number): void => void h.write(value, offset, length, 'ascii');
  const octal = (n: number, length: number): string => n.toString(8).padStart(length - 1, '0');
  field(name, 0, 100);
  field(octal(dir ? 0o755 : 0o644, 8), 100, 8);
  field(octal(0, 8), 108, 8);
  field(octal(0, 8), 116, 8);
  field(octal(size, 12), 124, 12);
  field(octal(0, 12), 136, 12);
  field('        ', 148, 8);
  field(dir ? '5' : '0', 156, 1);
  field('ustar\x0000', 257, 8);
  let sum = 0;
  for (const b of h) sum += b;
  field(octal(sum, 7) + '\0', 148, 8);
  return h;
}

async function write(out: Writable, chunk: Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/**
 * Writes `image` as an OCI image layout tar at `dest` (atomically: a temp file renamed), layer
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
  const tmp = `${dest}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  try {
    const file = async (path: string, size: number, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> => {
      await write(out, tarHeader(path, size, false));
      for await (const c of chunks) await write(out, c);
      if (size % 512) await write(out, Buffer.alloc(512 - (size % 512)));
    };
    await write(out, tarHeader('blobs/', 0, true));
    await write(out, tarHeader('blobs/sha256/', 0, true));
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
    await write(out, Buffer.alloc(1024));
    out.end();
    await once(out, 'close');
    await rename(tmp, dest);
  } catch (err) {
    out.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}
