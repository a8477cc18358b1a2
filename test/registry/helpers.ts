/** Small images for registry tests: random blobs, an OCI/Docker manifest over them, an index. */
import { createHash, randomBytes } from 'node:crypto';
import { MediaType, type Descriptor, type Platform } from '@buildcache/registry';

/** `sha256:<hex>` of bytes. */
export const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A blob of `size` random bytes with its descriptor. */
export function randomBlob(size: number, mediaType: string = MediaType.OCI_LAYER_GZIP): { bytes: Buffer; descriptor: Descriptor } {
  const bytes = randomBytes(size);
  return { bytes, descriptor: { mediaType, digest: sha(bytes), size } };
}

/** A config blob for `platform`. */
export function configBlob(platform: Platform = { os: 'linux', architecture: 'amd64' }, mediaType: string = MediaType.OCI_CONFIG): { bytes: Buffer; descriptor: Descriptor } {
  const bytes = Buffer.from(JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: [] }, created: new Date(0).toISOString(), nonce: randomBytes(8).toString('hex') }));
  return { bytes, descriptor: { mediaType, digest: sha(bytes), size: bytes.length } };
}

/** Exact manifest bytes for `config` + `layers` (OCI unless `docker`). */
export function manifestBytes(config: Descriptor, layers: Descriptor[], docker = false): { bytes: Buffer; mediaType: string; digest: string } {
  const mediaType = docker ? MediaType.DOCKER_MANIFEST : MediaType.OCI_MANIFEST;
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers }, null, 2));
  return { bytes, mediaType, digest: sha(bytes) };
}

/** Exact index bytes (OCI unless `docker`) over manifests with platforms. */
export function indexBytes(entries: Descriptor[], docker = false): { bytes: Buffer; mediaType: string; digest: string } {
  const mediaType = docker ? MediaType.DOCKER_LIST : MediaType.OCI_INDEX;
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: entries }));
  return { bytes, mediaType, digest: sha(bytes) };
}

/** Reads a whole stream. */
export async function collect(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
