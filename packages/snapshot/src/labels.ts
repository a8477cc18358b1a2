/** containerd label and annotation names the backends and the cache agree on. */
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** On a lease: hold only the directly leased objects, do not follow their label references. */
export const LABEL_GC_FLAT = 'containerd.io/gc.flat';
/** On a lease: RFC 3339 time after which the lease is no longer a root and is removed by GC. */
export const LABEL_GC_EXPIRE = 'containerd.io/gc.expire';
/** On content or a snapshot: a GC root. */
export const LABEL_GC_ROOT = 'containerd.io/gc.root';
/** Prefix of labels whose value is a digest the object references. */
export const LABEL_GC_REF_CONTENT = 'containerd.io/gc.ref.content';
/** Prefix of labels whose value is a snapshot key the object references (`…snapshot.<snapshotter>`). */
export const LABEL_GC_REF_SNAPSHOT = 'containerd.io/gc.ref.snapshot';
/** On a compressed blob (label) or its descriptor (annotation): the diffID of its uncompressed tar. */
export const LABEL_UNCOMPRESSED = 'containerd.io/uncompressed';

/** OCI layer media types. */
export const MEDIA_TYPE_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_TYPE_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const MEDIA_TYPE_DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const MEDIA_TYPE_DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

/** Layer compression as named by its media type. */
export type Compression = 'uncompressed' | 'gzip' | 'zstd';

/** Non-distributable (foreign) layer media types, and the distributable type of the same layer. */
const NON_DISTRIBUTABLE: ReadonlyMap<string, string> = new Map([
  ['application/vnd.oci.image.layer.nondistributable.v1.tar', MEDIA_TYPE_LAYER],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', MEDIA_TYPE_LAYER_GZIP],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', MEDIA_TYPE_LAYER_ZSTD],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar', MEDIA_TYPE_DOCKER_LAYER],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', MEDIA_TYPE_DOCKER_LAYER_GZIP],
]);

/** Whether a layer media type says the blob must not be pushed (it is fetched from its `urls`). */
export function isNonDistributable(mediaType: string): boolean {
  return NON_DISTRIBUTABLE.has(mediaType);
}

/** The distributable media type of the same layer (the media type itself when already distributable). */
export function distributableMediaType(mediaType: string): string {
  return NON_DISTRIBUTABLE.get(mediaType) ?? mediaType;
}

/** The compression a layer media type declares, or undefined for a media type that is not a layer. */
export function compressionOf(mediaType: string): Compression | undefined {
  switch (distributableMediaType(mediaType)) {
    case MEDIA_TYPE_LAYER:
    case MEDIA_TYPE_DOCKER_LAYER:
      return 'uncompressed';
    case MEDIA_TYPE_LAYER_GZIP:
    case MEDIA_TYPE_DOCKER_LAYER_GZIP:
      return 'gzip';
    case MEDIA_TYPE_LAYER_ZSTD:
      return 'zstd';
    default:
      return undefined;
  }
}

const COMPRESSIONS: ReadonlySet<string> = new Set<Compression>(['uncompressed', 'gzip', 'zstd']);

/** `name` as a Compression; ErrInvalidArgument for any other name (from callers without types). */
export function checkCompression(name: string): Compression {
  if (!COMPRESSIONS.has(name)) {
    throw new ErrInvalidArgument(`unknown compression ${JSON.stringify(name)}: use uncompressed, gzip or zstd`);
  }
  return name as Compression;
}

/** The OCI media type of a layer with the given compression (ErrInvalidArgument for an unknown one). */
export function layerMediaType(compression: Compression): string {
  const c = checkCompression(compression);
  return c === 'gzip' ? MEDIA_TYPE_LAYER_GZIP : c === 'zstd' ? MEDIA_TYPE_LAYER_ZSTD : MEDIA_TYPE_LAYER;
}
