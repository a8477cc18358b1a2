/** Manifest media types, the JSON shapes the client reads, and choosing a platform from an index. */
import { arch as hostArch } from 'node:process';

/** OCI and Docker v2 schema 2 media types. */
export const MediaType = {
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Every manifest type the client reads; sent as `Accept` (registry 2.8 answers 404 to a missing OCI type). */
export const MANIFEST_TYPES: readonly string[] = [MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_LIST];

/** True for an OCI image index or a Docker manifest list. */
export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.OCI_INDEX || mediaType === MediaType.DOCKER_LIST;
}

/** A platform as OCI writes it in an index entry. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
}

/** An OCI content descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
  readonly urls?: readonly string[];
  readonly artifactType?: string;
}

/** An image manifest (OCI or Docker v2 schema 2). */
export interface ImageManifest {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** An image index (OCI) or manifest list (Docker). */
export interface ImageIndex {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly manifests: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

const ARCH: Record<string, { architecture: string; variant?: string }> = {
  x64: { architecture: 'amd64' },
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  ia32: { architecture: '386' },
  i386: { architecture: '386' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  ppc64: { architecture: 'ppc64le' },
};

/** Canonical form: `x86_64` → `amd64`, `aarch64` → `arm64` (variant `v8`), `arm` → variant `v7` by default. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const mapped = ARCH[p.architecture.toLowerCase()];
  const architecture = mapped?.architecture ?? p.architecture.toLowerCase();
  let variant = p.variant ?? mapped?.variant;
  if (architecture === 'arm64' && (variant === undefined || variant === '8')) variant = 'v8';
  if (architecture === 'arm' && variant === undefined) variant = 'v7';
  if (architecture === 'arm' && variant !== undefined && /^[5-8]$/.test(variant)) variant = `v${variant}`;
  return { ...p, os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

/** `linux/<this machine's architecture>`. */
export function defaultPlatform(): Platform {
  return normalizePlatform({ os: 'linux', architecture: hostArch });
}

/** `os/arch[/variant]`, for messages. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined).join('/');
}

function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown');
}

/**
 * The index entry for `want`: same os and architecture, and the same variant when `want` names one
 * (an exact variant beats none). Attestation entries are skipped; `undefined` when nothing fits.
 */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor | undefined {
  const w = normalizePlatform(want);
  let loose: Descriptor | undefined;
  for (const d of index.manifests) {
    if (d.platform === undefined || isAttestation(d)) continue;
    const p = normalizePlatform(d.platform);
    if (p.os !== w.os || p.architecture !== w.architecture) continue;
    if (p.variant === w.variant) return d;
    if (w.variant === undefined || (w.architecture === 'arm64' && p.variant === undefined)) loose ??= d;
  }
  return loose;
}
