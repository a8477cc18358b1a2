/**
 * The image store: images by name and config digest over a layer store. An import reads the whole
 * archive and checks it (blobs, digests, diff_ids, parent links) before it registers a layer; each
 * image then holds one reference on its top layer (children hold their parents). A journal written
 * before any reference is taken lets `open` give back what an interrupted import or removal took.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { processGone } from '@buildcache/sys';
import { ErrInvalidArgument, ErrInvalidImage, ErrNotFound } from '@buildcache/errdefs';
import type { ImmutableRef } from '@buildcache/cache';
import type { Layer, LayerStore } from '@buildcache/layers';
import { spool, type ArchiveSource } from './archive.js';
import { exportArchive, type ExportFormat } from './export.js';
import { familiarName, fullName } from './names.js';
import { planImport, verifyDiffIDs, type ImagePlan } from './plan.js';
import { hex, readAll, removeFile, writeJSON, type ImageRecord, type Journal } from './records.js';

/**
 * Whether the process that made work entry `name` of `tmp/` (`<what>-<pid>-<random>`) is gone, so
 * that the entry can be removed. The image store's root is not locked for a process: the cache's
 * lock covers `<cache root>/metadata`, which for a containerd cache is per namespace, while every
 * namespace (and the embedded backend) of one `--root` shares `<root>/layers/images` — two
 * processes can have this store open at once. Entries of an older version (no pid) are removed.
 */
function tmpOwnerGone(name: string): boolean {
  const pid = /^[a-z]+-(\d+)-/.exec(name)?.[1];
  return pid === undefined || processGone(Number(pid));
}

/** Layer files are read in chunks this large: each read is one thread-pool job, and so is each gzip input. */
const READ_CHUNK = 1 << 20;

/** Options of `ImageStore.open`. */
export interface ImageStoreOptions {
  /** The layer store the images' layers live in (its references are the store's to take and give back). */
  readonly layers: LayerStore;
  /** The store's own directory. */
  readonly root: string;
  readonly logger?: Logger;
}

/** What an import or add reports as it goes (a test may stop the process at any of these points); an add's `layer` events name its top record as `image`. */
export type ImportEvent =
  | { readonly stage: 'layer'; readonly image: string; readonly chainID: string; readonly index: number }
  | { readonly stage: 'recorded'; readonly image: string };

/** Options of `import`. */
export interface ImportOptions {
  /** What the source is called in messages (a file name, `stdin`). */
  readonly what?: string;
  readonly onProgress?: (event: ImportEvent) => void;
}

/** An image as listed. */
export interface ImageInfo {
  readonly id: string;
  /** Familiar names (`debian:bookworm`). */
  readonly names: readonly string[];
  readonly layers: number;
  /** Bytes of the uncompressed layers. */
  readonly size: number;
  /** The config's `created`, when it has one. */
  readonly created?: string;
}

/** The parts of an OCI image config a build starts from. */
export interface ImageConfigJSON {
  readonly config?: {
    readonly Env?: readonly string[];
    readonly Cmd?: readonly string[];
    readonly Entrypoint?: readonly string[];
    readonly WorkingDir?: string;
    readonly User?: string;
    readonly Labels?: Readonly<Record<string, string>>;
  };
  readonly [key: string]: unknown;
}

/** An image resolved for building on it: its ID, config and top layer's cache record. */
export interface ResolvedImage {
  /** The config digest. */
  readonly id: string;
  /** The full name `ref` matched, or the ID when `ref` was one. */
  readonly name: string;
  readonly config: ImageConfigJSON;
  /** The top layer and the cache record holding its snapshot (none for an image without layers). */
  readonly topLayer?: { readonly chainID: string; readonly recordId: string };
}

/** Images by name and ID over one layer store. */
export class ImageStore {
  #lock: Promise<unknown> = Promise.resolve();
  #seq = 0;
  readonly #images = new Map<string, ImageRecord>();
  /** The reference each image holds on its top layer. */
  readonly #held = new Map<string, Layer>();

  private constructor(
    private readonly layers: LayerStore,
    private readonly root: string,
    private readonly log: Logger,
  ) {}

  private dir(name: 'images' | 'pending' | 'tmp'): string {
    return join(this.root, name);
  }

  /** Opens the store, undoing or finishing imports and removals a crash interrupted. */
  static async open(options: ImageStoreOptions): Promise<ImageStore> {
    const store = new ImageStore(options.layers, options.root, options.logger ?? pino({ level: 'silent' }));
    for (const d of ['images', 'pending', 'tmp'] as const) await mkdir(store.dir(d), { recursive: true });
    // Not only this process may have the store open (see `tmpOwnerGone`): only dead owners' work goes.
    for (const name of await readdir(store.dir('tmp'))) {
      if (tmpOwnerGone(name)) await rm(join(store.dir('tmp'), name), { recursive: true, force: true });
    }
    for (const rec of await readAll<ImageRecord>(store.dir('images'))) {
      store.#images.set(rec.id, rec);
      store.#seq = Math.max(store.#seq, rec.seq);
    }
    for (const j of await readAll<Journal>(store.dir('pending'))) await store.recover(j);
    const registered = new Set(store.layers.list().map((m) => m.chainID));
    for (const rec of store.#images.values()) {
      const top = rec.layers.at(-1);
      // The record's reference was taken (and counted on disk) by the import that wrote it: adopt it.
      if (top && registered.has(top.chainID)) store.#held.set(rec.id, store.layers.adopt(top.chainID));
      else if (top) store.log.warn({ image: rec.id, layer: top.chainID }, 'the top layer of an image is no longer registered; the image cannot be exported');
    }
    return store;
  }

  /** Undoes an import that wrote no record, or finishes a removal: layer references go back to the journal's counts. */
  private async recover(j: Journal): Promise<void> {
    const rec = this.#images.get(j.id);
    const committed = j.kind !== 'remove' && rec?.nonce === j.nonce;
    if (j.kind === 'remove' && rec) {
      await removeFile(this.dir('images'), `${hex(j.id)}.json`);
      this.#images.delete(j.id);
    }
    if (!committed) {
      const metas = new Map(this.layers.list().map((m) => [m.chainID, m]));
      for (const { chainID, recordId, refs } of j.refs) {
        const meta = chainID !== undefined ? metas.get(chainID) : [...metas.values()].find((m) => m.recordId === recordId);
        for (let n = meta?.refs ?? 0; n > refs; n--) await this.layers.release(this.layers.adopt(meta!.chainID));
      }
      this.log.info({ journal: j }, 'undid an interrupted image %s', j.kind);
    }
    await removeFile(this.dir('pending'), `${j.nonce}.json`);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Imports every image of an OCI image layout or `docker save` archive (plain or compressed tar).
   * Bad input fails with a typed error before any layer is registered. Returns the images imported.
   */
  async import(source: ArchiveSource, options: ImportOptions = {}): Promise<ImageInfo[]> {
    const what = options.what ?? 'the archive';
    const work = await mkdtemp(join(this.dir('tmp'), `import-${process.pid}-`));
    try {
      const plans = await planImport(await spool(source, work, what), what);
      for (const p of plans) {
        try {
          p.names.splice(0, p.names.length, ...p.names.map(fullName));
        } catch (err) {
          throw new ErrInvalidImage(`image ${p.id} in ${what}: ${(err as Error).message}`, { cause: err, details: { digest: p.id } });
        }
      }
      await verifyDiffIDs(plans, new Set(this.layers.list().map((m) => m.chainID)));
      return await this.serial(async () => {
        const out: ImageInfo[] = [];
        for (const p of plans) out.push(this.info(await this.record(p, options.onProgress)));
        return out;
      });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Records one checked image: takes its layers (registering those missing) under a journal. */
  private async record(p: ImagePlan, onProgress?: (e: ImportEvent) => void): Promise<ImageRecord> {
    const existing = this.#images.get(p.id);
    if (existing) {
      await this.claim(existing, p.names);
      return existing;
    }
    const nonce = randomUUID();
    const metas = new Map(this.layers.list().map((m) => [m.chainID, m]));
    const journal: Journal = { nonce, kind: 'import', id: p.id, refs: p.layers.map((l) => ({ chainID: l.chainID, refs: metas.get(l.chainID)?.refs ?? 0 })) };
    return this.journaled(journal, p.names, onProgress, async (held) => {
      let start = p.layers.length;
      while (start > 0 && !metas.has(p.layers[start - 1]!.chainID)) start--;
      if (start > 0) held.top = await this.layers.get(p.layers[start - 1]!.chainID);
      for (const [i, l] of p.layers.entries()) {
        if (i >= start) {
          const layer: Layer = await this.layers.register(createReadStream(l.file.path, { highWaterMark: READ_CHUNK }), held.top?.chainID, { descriptor: l.descriptor });
          const below = held.top;
          held.top = layer;
          if (below) await this.layers.release(below);
          if (layer.chainID !== l.chainID) throw new ErrInvalidImage(`layer ${l.descriptor.digest} registered as ${layer.chainID}, the config says ${l.chainID}`);
        }
        onProgress?.({ stage: 'layer', image: p.id, chainID: l.chainID, index: i });
      }
      const sizes = new Map(this.layers.list().map((m) => [m.chainID, m.size]));
      return {
        id: p.id, names: [], nonce, seq: ++this.#seq, config: p.config.toString('base64'),
        layers: p.layers.map((l) => ({ chainID: l.chainID, diffID: l.diffID, size: sizes.get(l.chainID)! })),
        ...(p.manifest ? { manifest: p.manifest.toString('base64') } : {}),
      };
    });
  }

  /**
   * Records an image a build made: the layers are the chain of cache record `top` (base first; each
   * registered in the layer store as the record it is, unless already a layer), the config is
   * `config` with `rootfs` set from the layers' diff IDs, its digest the image's ID. `names` move to
   * it as an import's do. A journal written before any layer reference is taken lets `open` undo a
   * killed add.
   */
  async add(top: ImmutableRef | undefined, config: Readonly<Record<string, unknown>>, names: readonly string[], options: Pick<ImportOptions, 'onProgress'> = {}): Promise<ImageInfo> {
    const full = names.map(fullName);
    const chain = top?.layerChain() ?? [];
    try {
      return this.info(await this.serial(async () => {
        const nonce = randomUUID();
        const refsOf = (recordId: string): number => this.layers.list().find((m) => m.recordId === recordId)?.refs ?? 0;
        const entries: { chainID?: string; recordId: string; refs: number }[] = chain.map((r) => ({ recordId: r.id, refs: refsOf(r.id) }));
        const journal = (id: string): Journal => ({ nonce, kind: 'add', id, refs: entries });
        return this.journaled(journal(''), full, options.onProgress, async (held) => {
          for (const [i, ref] of chain.entries()) {
            const known = this.layers.list().find((m) => m.recordId === ref.id);
            const next: Layer = known ? await this.layers.get(known.chainID) : await this.layers.registerRecord(ref, held.top?.chainID);
            options.onProgress?.({ stage: 'layer', image: top!.id, chainID: next.chainID, index: i });
            entries[i] = { chainID: next.chainID, recordId: ref.id, refs: this.layers.list().find((m) => m.chainID === next.chainID)!.refs - 1 };
            await writeJSON(this.dir('pending'), `${nonce}.json`, journal(''));
            if (held.top) await this.layers.release(held.top);
            held.top = next;
          }
          const metas = new Map(this.layers.list().map((m) => [m.chainID, m]));
          const layers = entries.map((e) => metas.get(e.chainID!)!);
          const bytes = Buffer.from(JSON.stringify({ ...config, rootfs: { type: 'layers', diff_ids: layers.map((m) => m.diffID) } }));
          const id = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
          const existing = this.#images.get(id);
          if (existing) return existing;
          await writeJSON(this.dir('pending'), `${nonce}.json`, journal(id));
          return {
            id, names: [], nonce, seq: ++this.#seq, config: bytes.toString('base64'),
            layers: layers.map((m) => ({ chainID: m.chainID, diffID: m.diffID, size: m.size })),
          };
        });
      }));
    } finally {
      for (const r of chain) await r.release();
    }
  }

  /**
   * One journaled registration (an import's or an add's): writes `journal`, lets `take` take the
   * layers (the reference on the top one kept in `held.top`) and give the record to write — or an
   * image already recorded, which only gets `names`. The new record gets the top layer's reference,
   * then `names`. Failing before the record, the layers go back and the journal goes; killed, the
   * journal lets `open` give them back.
   */
  private async journaled(
    journal: Journal, names: readonly string[], onProgress: ((e: ImportEvent) => void) | undefined,
    take: (held: { top?: Layer }) => Promise<ImageRecord>,
  ): Promise<ImageRecord> {
    const pending = `${journal.nonce}.json`;
    await writeJSON(this.dir('pending'), pending, journal);
    const held: { top?: Layer } = {};
    let journaled = true;
    try {
      const rec = await take(held);
      if (this.#images.get(rec.id) !== rec) {
        await writeJSON(this.dir('images'), `${hex(rec.id)}.json`, rec);
        this.#images.set(rec.id, rec);
        if (held.top) this.#held.set(rec.id, held.top);
        held.top = undefined;
        onProgress?.({ stage: 'recorded', image: rec.id });
        await removeFile(this.dir('pending'), pending);
        journaled = false;
      }
      await this.claim(rec, names);
      return rec;
    } finally {
      if (held.top) await this.layers.release(held.top);
      if (journaled) await removeFile(this.dir('pending'), pending);
    }
  }

  /** Gives `names` to `rec`, taking them from the images that had them. */
  private async claim(rec: ImageRecord, names: readonly string[]): Promise<void> {
    const add = names.filter((n) => !rec.names.includes(n));
    if (add.length === 0) return;
    rec.names.push(...add);
    await writeJSON(this.dir('images'), `${hex(rec.id)}.json`, rec);
    for (const other of this.#images.values()) {
      if (other === rec || !other.names.some((n) => add.includes(n))) continue;
      other.names = other.names.filter((n) => !add.includes(n));
      await writeJSON(this.dir('images'), `${hex(other.id)}.json`, other);
    }
  }

  private info(rec: ImageRecord): ImageInfo {
    let created: string | undefined;
    try {
      const c = JSON.parse(Buffer.from(rec.config, 'base64').toString('utf8')) as { created?: unknown };
      if (typeof c.created === 'string') created = c.created;
    } catch {
      // a config that is not JSON has no date to show
    }
    return {
      id: rec.id, names: rec.names.map(familiarName), layers: rec.layers.length, size: rec.layers.reduce((s, l) => s + l.size, 0),
      ...(created ? { created } : {}),
    };
  }

  /** Every image, most recently imported first. */
  list(): ImageInfo[] {
    return [...this.#images.values()].sort((a, b) => b.seq - a.seq).map((r) => this.info(r));
  }

  /** The image `ref` names: a name, a full ID (`sha256:…`) or a unique prefix of the ID's hex (4+ characters). */
  private find(ref: string): ImageRecord {
    const byId = /^(?:sha256:)?([0-9a-f]{4,64})$/.exec(ref);
    if (byId) {
      const hits = [...this.#images.values()].filter((r) => hex(r.id).startsWith(byId[1]!));
      if (hits.length > 1) throw new ErrInvalidArgument(`image ID prefix ${ref} is ambiguous (${hits.length} images); give more of it`);
      if (hits.length === 1) return hits[0]!;
    }
    let name: string | undefined;
    try {
      name = fullName(ref);
    } catch (err) {
      if (!byId) throw err;
    }
    for (const r of this.#images.values()) if (name !== undefined && r.names.includes(name)) return r;
    throw new ErrNotFound(`no image ${JSON.stringify(ref)}; see buildcache images`, { details: { id: ref } });
  }

  /** The image `ref` names (see `find`), listed. */
  get(ref: string): ImageInfo {
    return this.info(this.find(ref));
  }

  /** The image `ref` names (see `find`) with its parsed config and top layer's record, to build on. */
  resolve(ref: string): ResolvedImage {
    const rec = this.find(ref);
    let config: ImageConfigJSON;
    try {
      config = JSON.parse(Buffer.from(rec.config, 'base64').toString('utf8')) as ImageConfigJSON;
    } catch (err) {
      throw new ErrInvalidImage(`image ${rec.id}: its config is not JSON; import the image again`, { cause: err, details: { digest: rec.id } });
    }
    let name = rec.id;
    try {
      if (rec.names.includes(fullName(ref))) name = fullName(ref);
    } catch {
      // an ID is not a name
    }
    const top = rec.layers.at(-1);
    if (!top) return { id: rec.id, name, config };
    const meta = this.layers.list().find((m) => m.chainID === top.chainID);
    if (!meta) throw new ErrNotFound(`image ${JSON.stringify(ref)}: its top layer ${top.chainID} is no longer in the layer store; import the image again`, { details: { id: ref, digest: top.chainID } });
    return { id: rec.id, name, config, topLayer: { chainID: meta.chainID, recordId: meta.recordId } };
  }

  /** The image `ref` names as an archive: an OCI image layout, or (`docker`) a `docker save` archive that also is one. */
  export(ref: string, format: ExportFormat = 'oci'): AsyncIterable<Buffer> {
    return exportArchive(this.find(ref), this.layers, format);
  }

  /** Removes the image `ref` names and gives back its layer reference (layers no one else holds go). */
  remove(ref: string): Promise<void> {
    return this.serial(async () => {
      const rec = this.find(ref);
      const top = this.#held.get(rec.id);
      const meta = top && this.layers.list().find((m) => m.chainID === top.chainID);
      const nonce = randomUUID();
      const journal: Journal = { nonce, kind: 'remove', id: rec.id, refs: meta ? [{ chainID: meta.chainID, refs: meta.refs - 1 }] : [] };
      await writeJSON(this.dir('pending'), `${nonce}.json`, journal);
      await removeFile(this.dir('images'), `${hex(rec.id)}.json`);
      this.#images.delete(rec.id);
      this.#held.delete(rec.id);
      if (top) await this.layers.release(top);
      await removeFile(this.dir('pending'), `${nonce}.json`);
    });
  }

  /** Waits for work in progress; the layer store is the caller's to close. */
  async close(): Promise<void> {
    await this.#lock;
  }
}
