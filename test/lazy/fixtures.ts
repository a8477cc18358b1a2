/** Lazy-pull fixtures: images pushed to a test registry from converted blobs, and counting range readers. */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { MediaType, type Descriptor, type RegistryClient } from '@buildcache/registry';
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, type ConvertResult, type RangeReader } from '@buildcache/estargz';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** One layer to push: its bytes, media type and (for eStargz) its conversion result. */
export interface LayerBlob {
  readonly bytes: Buffer;
  readonly estargz?: ConvertResult;
}

/** Pushes `layers` (base first) with a minimal config and an OCI manifest to `target`; returns the layer descriptors. */
export async function pushLayers(client: RegistryClient, target: string, layers: readonly LayerBlob[]): Promise<Descriptor[]> {
  const descs: Descriptor[] = [];
  const diffIDs: string[] = [];
  for (const l of layers) {
    const desc: Descriptor = {
      mediaType: MediaType.OCI_LAYER_GZIP,
      digest: sha(l.bytes),
      size: l.bytes.length,
      ...(l.estargz ? { annotations: { [TOC_DIGEST_ANNOTATION]: l.estargz.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(l.estargz.uncompressedSize) } } : {}),
    };
    await client.pushBlob(target, desc, l.bytes);
    descs.push(desc);
    diffIDs.push(sha(gunzipSync(l.bytes)));
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIDs } }));
  const configDesc = { mediaType: MediaType.OCI_CONFIG, digest: sha(config), size: config.length };
  await client.pushBlob(target, configDesc, config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: configDesc, layers: descs }));
  await client.pushManifest(target, manifest, MediaType.OCI_MANIFEST);
  return descs;
}

/** A RangeReader that counts requests and bytes, and can hold reads until `open()`. */
export class CountingReader implements RangeReader {
  requests = 0;
  bytes = 0;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  readonly log: Array<{ offset: number; length: number }> = [];

  constructor(private readonly inner: RangeReader) {}

  get size(): number {
    return this.inner.size;
  }

  /** Holds every read until `open()`. */
  close(): void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
  }

  open(): void {
    this.openGate?.();
    this.gate = undefined;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    this.requests++;
    this.bytes += length;
    this.log.push({ offset, length });
    if (this.gate) await this.gate;
    return this.inner.readAt(offset, length);
  }
}
