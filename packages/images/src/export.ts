/**
 * Writing an image as an archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`),
 * and for `docker` also the `manifest.json` (and `repositories`) of `docker save`, as Docker 25 and
 * later write it. Layer blobs are the layers' original uncompressed tars, rebuilt byte for byte from
 * their tar-split data, so their digests are the config's diff IDs.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { LayerStore } from '@buildcache/layers';
import { MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_MANIFEST, NAME_ANNOTATION, REF_ANNOTATION } from './media.js';
import { familiarName, splitName } from './names.js';
import type { Descriptor } from './plan.js';
import { hex, type ImageRecord } from './records.js';

/** The archive kinds `export` writes. */
export type ExportFormat = 'oci' | 'docker';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (digest: string): string => `blobs/sha256/${hex(digest)}`;

/** The manifest to export: the original when its layers are the uncompressed tars, else a new OCI manifest. */
function manifestOf(rec: ImageRecord, config: Buffer): Buffer {
  if (rec.manifest) {
    const bytes = Buffer.from(rec.manifest, 'base64');
    const m = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; layers?: Descriptor[] };
    const layersAreTars = m.layers?.every((l, i) => l.digest === rec.layers[i]?.diffID) ?? false;
    if (layersAreTars && m.mediaType === MEDIA_TYPE_OCI_MANIFEST) return bytes;
  }
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: rec.id, size: config.length },
    layers: rec.layers.map((l) => ({ mediaType: MEDIA_TYPE_OCI_LAYER, digest: l.diffID, size: l.size })),
  }));
}

function indexOf(rec: ImageRecord, manifest: Buffer): Buffer {
  const desc = { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: sha(manifest), size: manifest.length };
  const manifests = rec.names.length === 0
    ? [desc]
    : rec.names.map((n) => ({ ...desc, annotations: { [NAME_ANNOTATION]: n, [REF_ANNOTATION]: splitName(n).tag } }));
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests }));
}

function dockerFiles(rec: ImageRecord): [string, Buffer][] {
  const tags = rec.names.filter((n) => !n.includes('@')).map(familiarName);
  const manifest = [{ Config: blobPath(rec.id), RepoTags: tags, Layers: rec.layers.map((l) => blobPath(l.diffID)) }];
  const repositories: Record<string, Record<string, string>> = {};
  const top = rec.layers.at(-1);
  if (top) for (const t of tags) (repositories[splitName(t).repository] ??= {})[splitName(t).tag] = hex(top.chainID);
  return [['manifest.json', Buffer.from(JSON.stringify(manifest))], ['repositories', Buffer.from(JSON.stringify(repositories))]];
}

/** The archive of `rec`, streamed; the layers' references are taken while each is read. */
export function exportArchive(rec: ImageRecord, layers: LayerStore, format: ExportFormat): AsyncIterable<Buffer> {
  const pack = tar.pack();
  const header = { mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 };
  const file = (name: string, body: Buffer): Promise<void> =>
    new Promise((res, rej) => pack.entry({ ...header, name, size: body.length }, body, (err) => (err ? rej(err) : res())));
  const write = async (): Promise<void> => {
    const config = Buffer.from(rec.config, 'base64');
    const manifest = manifestOf(rec, config);
    await file('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    for (const dir of ['blobs', 'blobs/sha256']) {
      await new Promise<void>((res, rej) => pack.entry({ ...header, name: dir, type: 'directory', mode: 0o755 }, (err) => (err ? rej(err) : res())));
    }
    await file(blobPath(rec.id), config);
    await file(blobPath(sha(manifest)), manifest);
    const written = new Set<string>();
    for (const l of rec.layers) {
      if (written.has(l.diffID)) continue;
      written.add(l.diffID);
      const layer = await layers.get(l.chainID);
      try {
        await pipeline(Readable.from(layer.tarStream()), pack.entry({ ...header, name: blobPath(l.diffID), size: l.size }));
      } finally {
        await layers.release(layer);
      }
    }
    await file('index.json', indexOf(rec, manifest));
    if (format === 'docker') for (const [name, body] of dockerFiles(rec)) await file(name, body);
    pack.finalize();
  };
  write().catch((err: unknown) => pack.destroy(err as Error));
  return pack as AsyncIterable<Buffer>;
}
