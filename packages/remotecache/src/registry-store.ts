/**
 * `@buildcache/remotecache/registry`: a cache kept under a registry reference (`type=registry,ref=R`),
 * and the store a spec names. Its own entry point: the package's main entry loads no registry module,
 * so a client that only parses specs or reads a layout directory does not load the registry client.
 */
import { Readable } from 'node:stream';
import { ErrInvalidArgument, ErrUnavailable } from '@buildcache/errdefs';
import { formatReference, toReference, type RegistryClient } from '@buildcache/registry';
import type { Descriptor } from '@buildcache/snapshot';
import { MAX_CONFIG_BYTES } from './config.js';
import type { CacheSpec } from './spec.js';
import { LocalStore, type BlobBytes, type CacheStore } from './stores.js';

/** A cache kept under a registry reference. */
export class RegistryStore implements CacheStore {
  readonly name: string;
  constructor(private readonly client: RegistryClient, private readonly ref: string) {
    this.name = `registry ${formatReference(toReference(ref))}`;
  }
  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.client.blobExists(this.ref, desc.digest);
  }
  async putBlob(desc: Descriptor, bytes: BlobBytes): Promise<boolean> {
    const pushed = await this.client.pushBlob(this.ref, desc, () => Readable.from(bytes()));
    return pushed.status === 'uploaded';
  }
  putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    return this.client.pushManifest(this.ref, bytes, mediaType);
  }
  async getManifest(): Promise<Buffer> {
    const m = await this.client.getManifest(this.ref);
    return m.bytes;
  }
  readBlob(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_CONFIG_BYTES) throw new ErrUnavailable(`${this.name}: blob ${desc.digest} is ${desc.size} bytes, more than the ${MAX_CONFIG_BYTES} read`);
    return this.client.readBlob(this.ref, desc);
  }
  fetch(desc: Descriptor): AsyncIterable<Uint8Array> {
    return this.client.fetchBlob(this.ref, desc);
  }
}

/** The store a spec names (a registry spec needs `client`). */
export function storeOf(spec: CacheSpec, client: RegistryClient | undefined): CacheStore {
  if (spec.type === 'local') return new LocalStore(spec.location, spec.tag);
  if (!client) throw new ErrInvalidArgument(`cache ${spec.location}: a registry client is needed for type=registry`);
  return new RegistryStore(client, spec.location);
}
