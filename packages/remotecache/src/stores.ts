/**
 * Where a remote cache lives: the operations the exporter and the importer need of it (is a blob
 * there, put a blob, put and get the tagged manifest, read and stream blobs), and the OCI image
 * layout directory that gives them (`type=local,dest=DIR` / `src=DIR`). The registry's store is in
 * registry-store.ts, its own entry point (`@buildcache/remotecache/registry`).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { ErrDigestMismatch, ErrNotFound, ErrUnavailable } from '@buildcache/errdefs';
import type { Descriptor } from '@buildcache/snapshot';
import { writeFileWhole } from '@buildcache/sys';
import { MAX_CONFIG_BYTES } from './config.js';

/** A blob's bytes, as a fresh stream for each (re)try. */
export type BlobBytes = () => AsyncIterable<Uint8Array>;

/** The operations a remote cache needs from where it is kept. */
export interface CacheStore {
  /** Names the store in messages (`registry 127.0.0.1:5000/cache:latest`, `local /dir (tag latest)`). */
  readonly name: string;
  hasBlob(desc: Descriptor): Promise<boolean>;
  /** Stores a blob (verified against its digest); resolves with whether bytes were sent. */
  putBlob(desc: Descriptor, bytes: BlobBytes): Promise<boolean>;
  /** Stores the manifest and tags it; the blobs it names must be stored first. */
  putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor>;
  /** The tagged manifest's bytes. ErrNotFound when there is none. */
  getManifest(): Promise<Buffer>;
  /** A small blob in full (at most MAX_CONFIG_BYTES), verified. */
  readBlob(desc: Descriptor): Promise<Buffer>;
  /** A blob as a verified stream (lazy layer fetches). */
  fetch(desc: Descriptor): AsyncIterable<Uint8Array>;
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const INDEX_MEDIA = 'application/vnd.oci.image.index.v1+json';

interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: (Descriptor & { annotations?: Record<string, string> })[];
}

const hex = (digest: string): string => digest.slice('sha256:'.length);

/**
 * A cache kept in an OCI image layout directory, under a tag (default `latest`). `shownDir` names
 * the directory in messages when it stands in for another (a daemon's copy of a client's layout).
 */
export class LocalStore implements CacheStore {
  readonly name: string;
  constructor(private readonly dir: string, private readonly tag = 'latest', shownDir = dir) {
    this.name = `local ${shownDir} (tag ${tag})`;
  }
  private blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', hex(digest));
  }
  /** The blobs the directory holds (digest → size); none when it does not exist yet. */
  async blobs(): Promise<Map<string, number>> {
    const dir = join(this.dir, 'blobs', 'sha256');
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
    const out = new Map<string, number>();
    const limit = pLimit(16);
    await Promise.all(names.map((n) => limit(async () => {
      const s = await stat(join(dir, n)).catch(() => undefined);
      if (s?.isFile()) out.set(`sha256:${n}`, s.size);
    })));
    return out;
  }
  async hasBlob(desc: Descriptor): Promise<boolean> {
    const s = await stat(this.blobPath(desc.digest)).catch(() => undefined);
    return s?.size === desc.size;
  }
  async putBlob(desc: Descriptor, bytes: BlobBytes): Promise<boolean> {
    if (await this.hasBlob(desc)) return false;
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const name = this.name;
    // checked after the last chunk: a mismatch throws before the blob takes its name
    async function* verified(): AsyncGenerator<Uint8Array> {
      const h = createHash('sha256');
      let size = 0;
      for await (const chunk of bytes()) {
        h.update(chunk);
        size += chunk.length;
        yield chunk;
      }
      const digest = `sha256:${h.digest('hex')}`;
      if (digest !== desc.digest || size !== desc.size) {
        throw new ErrDigestMismatch(`${name}: blob ${desc.digest} (${desc.size} bytes) read as ${digest} (${size} bytes); nothing was stored`, { details: { digest: desc.digest } });
      }
    }
    await writeFileWhole(this.blobPath(desc.digest), verified());
    return true;
  }
  async putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const desc: Descriptor = { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
    await this.putBlob(desc, async function* () {
      yield bytes;
    });
    await writeFileWhole(join(this.dir, 'oci-layout'), [Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }))]);
    await this.withIndexLock(async () => {
      const index = await this.readIndex();
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== this.tag);
      index.manifests.push({ ...desc, annotations: { [REF_NAME]: this.tag } });
      await writeFileWhole(join(this.dir, 'index.json'), [Buffer.from(JSON.stringify(index))]);
    });
    return desc;
  }
  async getManifest(): Promise<Buffer> {
    return (await this.getTagged()).bytes;
  }
  /** The tagged manifest's descriptor (as index.json has it, its size the bytes read) and bytes, verified. ErrNotFound when there is none. */
  async getTagged(): Promise<{ desc: Descriptor; bytes: Buffer }> {
    const entry = (await this.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === this.tag);
    if (!entry) throw new ErrNotFound(`${this.name}: no manifest is tagged ${this.tag} in index.json`, { details: { path: this.dir } });
    const bytes = await this.readBlob(entry);
    return { desc: { mediaType: entry.mediaType, digest: entry.digest, size: bytes.length }, bytes };
  }
  async readBlob(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_CONFIG_BYTES) throw new ErrUnavailable(`${this.name}: blob ${desc.digest} is ${desc.size} bytes, more than the ${MAX_CONFIG_BYTES} read`);
    const bytes = await readFile(this.blobPath(desc.digest)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new ErrNotFound(`${this.name}: blob ${desc.digest} is missing`, { details: { digest: desc.digest } });
      throw err;
    });
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (digest !== desc.digest) throw new ErrDigestMismatch(`${this.name}: blob ${desc.digest} reads as ${digest}`, { details: { digest: desc.digest } });
    return bytes;
  }
  fetch(desc: Descriptor): AsyncIterable<Uint8Array> {
    return createReadStream(this.blobPath(desc.digest));
  }
  private async readIndex(): Promise<LayoutIndex> {
    const text = await readFile(join(this.dir, 'index.json'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (text === undefined) return { schemaVersion: 2, mediaType: INDEX_MEDIA, manifests: [] };
    const index = JSON.parse(text) as LayoutIndex;
    if (!Array.isArray(index.manifests)) throw new ErrUnavailable(`${this.name}: index.json has no manifests array`);
    return index;
  }
  /** Serialises writers of index.json (`index.json.lock`, as BuildKit's client does); a lock older than a minute is stale. */
  private async withIndexLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = join(this.dir, 'index.json.lock');
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(lock, 'wx');
        await fh.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
        if (age > 60_000) await rm(lock, { force: true });
        else if (attempt > 200) throw new ErrUnavailable(`${this.name}: index.json.lock is held by another writer; try again`);
        else await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }
}
