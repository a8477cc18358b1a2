/** Media types and annotations of image archives. */

export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_TYPE_OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const MEDIA_TYPE_DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
/** containerd's annotation for an image's full name in an OCI layout's index. */
export const NAME_ANNOTATION = 'io.containerd.image.name';
/** The OCI annotation for a manifest's reference (a tag) in an index. */
export const REF_ANNOTATION = 'org.opencontainers.image.ref.name';
