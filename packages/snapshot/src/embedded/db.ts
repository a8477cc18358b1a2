/**
 * The embedded backend's one LevelDB (`<root>/meta`): key layout, opening (lock, damage and foreign
 * stores mapped to typed errors), and the label rules every object shares.
 */
import { readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Level } from 'level';
import { ErrInvalidArgument, ErrNotAStore, ErrStoreLocked } from '@buildcache/errdefs';

/** The metadata database: string keys, JSON values, every write with `sync: true`. */
export type MetaDB = Level<string, unknown>;

/** One operation of an atomic batch. */
export type BatchOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

/** Write options used for every mutation: durable before the call returns. */
export const SYNC = { sync: true } as const;

/** Separator inside compound keys; refused in names so keys stay unambiguous. */
export const SEP = '\u0000';

/** Key builders and prefixes (iterate a prefix with `range()`). */
export const keys = {
  snapshot: (name: string) => `snap!${name}`,
  snapshotPrefix: 'snap!',
  child: (parent: string, child: string) => `child!${parent}${SEP}${child}`,
  childPrefix: (parent: string) => `child!${parent}${SEP}`,
  removing: (id: number) => `snapgone!${String(id).padStart(12, '0')}`,
  removingPrefix: 'snapgone!',
  blob: (digest: string) => `blob!${digest}`,
  blobPrefix: 'blob!',
  lease: (id: string) => `lease!${id}`,
  leasePrefix: 'lease!',
  leaseResource: (lease: string, type: string, id: string) => `lres!${lease}${SEP}${type}${SEP}${id}`,
  leaseResourcePrefix: (lease: string) => `lres!${lease}${SEP}`,
  allLeaseResourcesPrefix: 'lres!',
  nextSnapshotId: 'meta!nextid',
  snapshotterMode: 'meta!snapshotter',
} as const;

/** Iterator bounds for every key that starts with `prefix`. */
export function range(prefix: string): { gte: string; lt: string } {
  // Every prefix ends in an ASCII character, so bumping it bounds exactly the keys under the prefix.
  const last = prefix.charCodeAt(prefix.length - 1);
  return { gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(last + 1) };
}

/** The `name!` prefixes of every key this backend writes (derived from `keys`). */
const KNOWN_PREFIXES = new Set(
  Object.values(keys).map((k) => {
    const key = typeof k === 'string' ? k : (k as (...args: string[]) => string)('x', 'x', 'x');
    return key.slice(0, key.indexOf('!') + 1);
  }),
);

/** What to do about a damaged store at `path`. */
const whatToDo = (path: string): string =>
  `Move the backend directory ${dirname(path)} aside (its snapshots and blobs are unusable without this store) to start an empty backend.`;

/** Refuses a path that is not a store: a file, or a non-empty directory without a LevelDB database. */
async function checkStorePath(path: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') {
      throw new ErrNotAStore(`embedded backend store ${path} is a file, not a directory. ${whatToDo(path)}`, { cause: err, details: { path } });
    }
    throw err;
  }
  if (entries.length > 0 && !entries.includes('CURRENT')) {
    throw new ErrNotAStore(
      `embedded backend store ${path} is a non-empty directory without a database (found ${entries.slice(0, 3).join(', ')}); ` +
        'pass a backend root whose store is missing or empty to create one, or an existing backend.',
      { details: { path } },
    );
  }
}

/** A LevelDB error while opening or first reading `path`, as a typed error naming the path and the remedy. */
function storeError(path: string, err: unknown): unknown {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  const reason = cause?.message ?? (err as Error).message;
  if (code === 'LEVEL_LOCKED') {
    return new ErrStoreLocked(`embedded backend store ${path} is locked by another process`, { cause: err, details: { path } });
  }
  if (code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR') {
    return new ErrNotAStore(`embedded backend store ${path} is damaged: LevelDB reports ${reason}. ${whatToDo(path)}`, { cause: err, details: { path } });
  }
  return err;
}

/**
 * LevelDB's write buffer and block cache, smaller than its defaults (4 MiB, 8 MiB): every write is
 * synchronous and small, and reads are point lookups the OS page cache serves well, so larger
 * buffers mostly add resident memory (and log to replay at the next open).
 */
const WRITE_BUFFER_BYTES = 512 * 1024;
const BLOCK_CACHE_BYTES = 1024 * 1024;

/**
 * Opens (creating in a missing or empty directory) the LevelDB at `path`. A DB held by another
 * process gives ErrStoreLocked; a damaged or foreign one, or a directory of other files, ErrNotAStore.
 */
export async function openMetaDB(path: string): Promise<MetaDB> {
  await checkStorePath(path);
  const db = new Level<string, unknown>(path, {
    valueEncoding: 'json',
    writeBufferSize: WRITE_BUFFER_BYTES,
    cacheSize: BLOCK_CACHE_BYTES,
  });
  try {
    await db.open();
  } catch (err) {
    throw storeError(path, err);
  }
  try {
    // The first and last keys: reads a table file (a truncated one fails here) and tells a foreign database.
    for (const reverse of [false, true]) {
      const [key] = await db.keys({ reverse, limit: 1 }).all();
      if (key !== undefined && !KNOWN_PREFIXES.has(key.slice(0, key.indexOf('!') + 1))) {
        throw new ErrNotAStore(
          `embedded backend store ${path} is a LevelDB database of something else (key ${JSON.stringify(key.slice(0, 40))}); ` +
            'pass the root of an embedded backend, or a missing or empty directory to create one.',
          { details: { path } },
        );
      }
    }
  } catch (err) {
    await db.close();
    throw storeError(path, err);
  }
  return db;
}

/**
 * Writes `ops` as one atomic, durable (`SYNC`) batch, through a chained batch: each operation goes
 * to LevelDB's native batch as it is added. The array form of `db.batch` keeps copies of every
 * operation on the JS heap until the write is done, and V8 moves them to the old generation, where
 * they stay until the next full collection: 10,000 batches of four operations left ~37 MiB there
 * against ~2 MiB this way, at half the CPU.
 */
export async function writeBatch(db: MetaDB, ops: Iterable<BatchOp>): Promise<void> {
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
  } catch (err) {
    await batch.close();
    throw err;
  }
  await batch.write(SYNC);
}

/**
 * Every `[key, value]` under `prefix`, in key order, read in batches of 16, 64, 256, then 1,000:
 * classic-level sizes an iterator's native read buffer for the batch asked for and keeps it until
 * V8 collects the iterator, so the usual batch of 1,000 would hold 64 KiB for a range of one or two
 * keys (a lease's resources), once per call.
 */
export async function scan<T>(db: MetaDB, prefix: string): Promise<Array<[string, T]>> {
  const out: Array<[string, T]> = [];
  const it = db.iterator(range(prefix));
  try {
    for (let size = 16; ; size = Math.min(size * 4, 1000)) {
      const rows = await it.nextv(size);
      if (rows.length === 0) return out;
      for (const [k, v] of rows) out.push([k, v as T]);
    }
  } finally {
    await it.close();
  }
}

/** True when some key starts with `prefix`. */
export async function hasPrefix(db: MetaDB, prefix: string): Promise<boolean> {
  const found = await db.keys({ ...range(prefix), limit: 1 }).all();
  return found.length > 0;
}

/** Refuses names containing the key separator or empty ones. */
export function checkName(what: string, name: string): void {
  if (name === '') throw new ErrInvalidArgument(`${what} must not be empty`, { details: { key: name } });
  if (name.includes(SEP)) throw new ErrInvalidArgument(`${what} ${JSON.stringify(name)} contains a NUL character`, { details: { key: name } });
}

const MAX_LABEL_SIZE = 4096;

/**
 * containerd's label rules: empty values are dropped, except `containerd.io/gc.*` ones which are
 * refused (a silently dropped `gc.flat` would make a lease non-flat); key+value at most 4096 bytes.
 */
export function cleanLabels(labels: Readonly<Record<string, string>> | undefined, owner: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (k === '') throw new ErrInvalidArgument(`empty label key on ${owner}`, { details: { key: owner } });
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_SIZE) {
      throw new ErrInvalidArgument(`label key and value length (${k.length + v.length} bytes) greater than maximum size (${MAX_LABEL_SIZE} bytes) on ${owner}`, {
        details: { key: owner, entry: k },
      });
    }
    if (v === '') {
      if (k.startsWith('containerd.io/gc.')) {
        throw new ErrInvalidArgument(`label ${JSON.stringify(k)} on ${owner} must not be empty`, { details: { key: owner, entry: k } });
      }
      continue;
    }
    out[k] = v;
  }
  return out;
}

/**
 * Applies a label update with containerd's field paths: `labels.<k>` sets or deletes one label,
 * `labels` or no paths replace them all. Any other path is refused as immutable.
 */
export function applyLabelUpdate(
  current: Readonly<Record<string, string>>,
  next: Readonly<Record<string, string>>,
  fieldpaths: readonly string[] | undefined,
  owner: string,
): Record<string, string> {
  const incoming = cleanLabels(next, owner);
  if (!fieldpaths || fieldpaths.length === 0) return incoming;
  let out: Record<string, string> = { ...current };
  for (const path of fieldpaths) {
    if (path === 'labels') {
      out = { ...incoming };
    } else if (path.startsWith('labels.')) {
      const k = path.slice('labels.'.length);
      if (Object.hasOwn(incoming, k)) out[k] = incoming[k]!;
      else delete out[k];
    } else {
      throw new ErrInvalidArgument(`cannot update ${JSON.stringify(path)} field on ${owner}`, { details: { key: owner, entry: path } });
    }
  }
  return out;
}
