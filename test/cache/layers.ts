/** Layer blobs for the cache tests: made by GNU tar, read back from a backend, served by a provider. */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, Descriptor } from '@buildcache/snapshot';
import type { DescHandlers } from '@buildcache/cache';

/** `sha256:<hex>` of some bytes. */
export const sha256 = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** A whole blob of the backend's content store. */
export async function readBlob(backend: Backend, digest: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of backend.content.read(digest)) chunks.push(c);
  return Buffer.concat(chunks);
}

/** A layer's bytes and its descriptor. */
export interface Layer {
  readonly bytes: Buffer;
  readonly desc: Descriptor;
}

/** A gzip layer made by GNU tar from `files`, with its descriptor (diffID annotated). */
export function tarLayer(files: Record<string, string>): Layer {
  const dir = mkdtempSync(join(tmpdir(), 'bc-layer-'));
  try {
    for (const [p, c] of Object.entries(files)) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      writeFileSync(join(dir, p), c);
    }
    execFileSync('tar', ['-C', dir, '--sort=name', '--owner=0', '--group=0', '--mtime=@0', '-czf', `${dir}.tgz`, ...Object.keys(files)]);
    const bytes = readFileSync(`${dir}.tgz`);
    rmSync(`${dir}.tgz`);
    const diffID = sha256(gunzipSync(bytes));
    return {
      bytes,
      desc: {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: sha256(bytes),
        size: bytes.length,
        annotations: { 'containerd.io/uncompressed': diffID },
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same layer recompressed with the zstd tool (same diffID, another blob). */
export function zstdLayer(layer: Layer): Layer {
  const bytes = execFileSync('zstd', ['-c', '-q'], { input: gunzipSync(layer.bytes) });
  return {
    bytes,
    desc: { ...layer.desc, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: sha256(bytes), size: bytes.length },
  };
}

/** The uncompressed tar inside a zstd blob, decompressed by the zstd tool. */
export function unzstd(blob: Buffer): Buffer {
  return execFileSync('zstd', ['-d', '-c', '-q'], { input: blob, maxBuffer: 1 << 30 });
}

/** Descriptor handlers serving `layers` in two chunks each, recording each fetched digest. */
export function providerFor(layers: readonly Layer[], fetched: string[]): DescHandlers {
  return new Map(
    layers.map((l) => [
      l.desc.digest,
      {
        provider: {
          async *fetch(desc: Descriptor) {
            fetched.push(desc.digest);
            yield l.bytes.subarray(0, 10);
            yield l.bytes.subarray(10);
          },
        },
      },
    ]),
  );
}
