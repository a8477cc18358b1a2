/**
 * `EmbeddedApplier`: the embedded backend's Applier. Reads a layer blob from the content store
 * (verifying its digest and size as it streams), picks where to write from the mounts, and runs
 * `applyLayer`. It never commits anything: on error the target is left half-written and the
 * caller removes the active snapshot.
 */
import { createHash } from 'node:crypto';
import { ErrDigestMismatch } from '@buildcache/errdefs';
import type { Logger } from 'pino';
import { MEDIA_TYPE_LAYER } from '../../labels.js';
import { bindSource, overlayDirs } from '../../mount.js';
import type { ActiveMount, Applier, ContentStore, Descriptor, Mount, Mounter } from '../../types.js';
import { applyLayer } from './apply.js';
import type { ApplyOptions } from './apply.js';
import { layerCompression } from './compression.js';

/** Options of the embedded applier and differ. */
export interface ArchiveOptions {
  readonly logger?: Logger;
}

/** Streams `source`, failing at the end when its digest or size differ from `desc`. */
async function* verified(source: AsyncIterable<Uint8Array>, desc: Descriptor): AsyncGenerator<Uint8Array> {
  const [algo, expected] = desc.digest.split(':', 2) as [string, string | undefined];
  const hash = createHash(algo === 'sha512' ? 'sha512' : 'sha256');
  let size = 0;
  for await (const c of source) {
    hash.update(c);
    size += c.length;
    yield c;
  }
  const got = hash.digest('hex');
  if (got !== expected || (desc.size > 0 && size !== desc.size)) {
    throw new ErrDigestMismatch(`layer blob ${desc.digest} read back as ${algo}:${got} (${size} bytes)`, { details: { digest: desc.digest } });
  }
}

/** Applies layer blobs from a content store onto mounts. */
export class EmbeddedApplier implements Applier {
  private readonly logger: Logger | undefined;

  constructor(
    private readonly content: ContentStore,
    private readonly mounter: Mounter,
    options: ArchiveOptions = {},
  ) {
    this.logger = options.logger?.child({ component: 'archive/applier' });
  }

  /**
   * Extracts `desc` onto `mounts`: a single rw bind is written directly, a single overlay with an
   * upperdir in overlay-upper mode, anything else is mounted on a temp dir first.
   */
  async apply(desc: Descriptor, mounts: readonly Mount[], options: { signal?: AbortSignal } = {}): Promise<Descriptor> {
    const compression = layerCompression(desc.mediaType);
    const common: ApplyOptions = {
      compression,
      ...(this.logger ? { logger: this.logger } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const stream = verified(this.content.read(desc.digest), desc);
    const bind = bindSource(mounts);
    const overlay = overlayDirs(mounts);
    let active: ActiveMount | undefined;
    try {
      let result;
      if (bind && !bind.readonly) result = await applyLayer(stream, bind.source, common);
      else if (overlay?.upper) {
        result = await applyLayer(stream, overlay.upper, { ...common, mode: 'overlay-upper', lowerDirs: overlay.lowers });
      } else {
        active = await this.mounter.mount(mounts);
        result = await applyLayer(stream, active.target, common);
      }
      this.logger?.debug({ digest: desc.digest, diffID: result.diffID, entries: result.entries }, 'layer applied');
      return { mediaType: MEDIA_TYPE_LAYER, digest: result.diffID, size: result.size };
    } finally {
      await active?.unmount();
    }
  }
}
