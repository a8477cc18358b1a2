/**
 * Pushing a cache record's chain to a registry as an image: the layer blobs of `getRemote` (in the
 * compression asked for, eStargz included), a minimal OCI config listing their diffIDs, and an OCI
 * manifest carrying each layer's annotations (the internal `containerd.io/uncompressed` removed).
 */
import { createHash } from 'node:crypto';
import type { BlobFormat, ImmutableRef } from '@buildcache/cache';
import { LABEL_UNCOMPRESSED, type ContentStore, type Descriptor } from '@buildcache/snapshot';
import { MediaType, type RegistryClient } from '@buildcache/registry';

/** Options of `pushImage`. */
export interface PushImageOptions {
  /** Layer format (default gzip; `estargz` for lazily pullable layers). */
  readonly compression?: BlobFormat;
  /** Platform written into the config (default linux/amd64). */
  readonly os?: string;
  readonly architecture?: string;
  /** An image config to keep (Env, Cmd, history…); its `rootfs` is replaced by the pushed layers' diffIDs. */
  readonly config?: Readonly<Record<string, unknown>>;
}

/** What was pushed. */
export interface PushedImage {
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Pushes the chain ending at `ref` to `target` (`host/repo:tag`) as an OCI image. */
export async function pushImage(client: RegistryClient, content: ContentStore, ref: ImmutableRef, target: string, options: PushImageOptions = {}): Promise<PushedImage> {
  const descs = await ref.getRemote({ compression: options.compression ?? 'gzip', force: options.compression !== undefined });
  for (const d of descs) {
    await client.pushBlob(target, d, () => content.read(d.digest));
  }
  const config = Buffer.from(JSON.stringify({
    architecture: options.architecture ?? 'amd64',
    os: options.os ?? 'linux',
    ...options.config,
    rootfs: { type: 'layers', diff_ids: descs.map((d) => d.annotations![LABEL_UNCOMPRESSED]!) },
  }));
  const configDesc: Descriptor = { mediaType: MediaType.OCI_CONFIG, digest: digestOf(config), size: config.length };
  await client.pushBlob(target, configDesc, config);
  const layers = descs.map((d) => {
    const { [LABEL_UNCOMPRESSED]: _diffID, ...annotations } = d.annotations ?? {};
    return { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(Object.keys(annotations).length ? { annotations } : {}) };
  });
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: configDesc, layers }));
  const manifestDesc = await client.pushManifest(target, manifest, MediaType.OCI_MANIFEST);
  return { manifest: manifestDesc, config: configDesc, layers };
}
