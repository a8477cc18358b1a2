/**
 * Opening the LevelDB database behind a metadata store: refusing paths that are not a store,
 * mapping LevelDB's lock and corruption errors to typed errors, and the format marker.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { Level } from 'level';
import type { Logger } from 'pino';
import { ErrNotAStore, ErrPermissionDenied, ErrStoreLocked, ErrUnknown } from '@buildcache/errdefs';
import type { Db } from './batch-writer.js';
import { FORMAT_NAME, FORMAT_VERSION, MARKER_KEY } from './keys.js';

/** The format marker as stored. */
interface Marker {
  format: string;
  version: number;
}

/**
 * LevelDB's write buffer (its log): opening replays the log and writes it out as a table, so its
 * size bounds what an open pays for the writes of the previous process (LevelDB's default, 4 MiB,
 * made opening after many commits take a second on a busy machine).
 */
const WRITE_BUFFER_BYTES = 512 * 1024;

/**
 * LevelDB's block cache: records are read once per load and then kept in memory by the store and the
 * manager, so a large cache (LevelDB's default, 8 MiB) only adds resident memory; the OS page cache
 * still holds the table files.
 */
const BLOCK_CACHE_BYTES = 1024 * 1024;

/** Opens (creating if missing or empty) the store database at absolute path `path`. */
export async function openDatabase(path: string, logger: Logger): Promise<Db> {
  const fresh = await checkPath(path);
  if (fresh) await mkdir(path, { recursive: true });
  const db: Db = new Level<string, string>(path, {
    keyEncoding: 'utf8',
    valueEncoding: 'utf8',
    writeBufferSize: WRITE_BUFFER_BYTES,
    cacheSize: BLOCK_CACHE_BYTES,
  });
  try {
    await db.open({ createIfMissing: fresh, errorIfExists: false });
  } catch (err) {
    throw openError(path, err);
  }
  try {
    await checkMarker(db, path, logger);
  } catch (err) {
    await db.close();
    throw err instanceof ErrNotAStore ? err : openError(path, err);
  }
  return db;
}

/** Returns true when `path` is missing or an empty directory; throws ErrNotAStore when it cannot be a store. */
async function checkPath(path: string): Promise<boolean> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw fsError(path, err);
  }
  if (!st.isDirectory()) {
    throw new ErrNotAStore(
      `metadata: ${path} is not a metadata store: it is a file, not a directory. ` +
        'Pass the directory of an existing store, or a path that does not exist yet to create one.',
      { details: { path } },
    );
  }
  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (err) {
    throw fsError(path, err);
  }
  if (entries.length === 0) return true;
  if (!entries.includes('CURRENT')) {
    throw new ErrNotAStore(
      `metadata: ${path} is not a metadata store: it is a non-empty directory without a LevelDB database ` +
        `(found ${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}). ` +
        'Pass the directory of an existing store, or an empty or missing directory to create one.',
      { details: { path } },
    );
  }
  return false;
}

/** Maps an error of `db.open()` to a typed error naming the path. */
function openError(path: string, err: unknown): Error {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  const reason = cause?.message ?? (err as Error).message;
  if (code === 'LEVEL_LOCKED') {
    return new ErrStoreLocked(
      `metadata: store ${path} is locked by another process (or is already open in this one). ` +
        'Close the other user of the store, or use a different path.',
      { cause: err, details: { path } },
    );
  }
  // A truncated table file shows as an I/O error on the first read.
  if (code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR') {
    return new ErrNotAStore(
      `metadata: ${path} is not a usable metadata store: LevelDB reports damage (${reason}). ` +
        'Move the directory aside and open again to start an empty store.',
      { cause: err, details: { path } },
    );
  }
  if (/permission denied/i.test(reason)) {
    return new ErrPermissionDenied(`metadata: cannot open store ${path}: ${reason}`, { cause: err, details: { path } });
  }
  return new ErrUnknown(`metadata: cannot open store ${path}: ${reason}`, { cause: err, details: { path } });
}

/** Maps a file-system error while inspecting `path`. */
function fsError(path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const message = `metadata: cannot inspect ${path}: ${(err as Error).message}`;
  if (code === 'EACCES' || code === 'EPERM') return new ErrPermissionDenied(message, { cause: err, details: { path } });
  if (code === 'ENOTDIR') {
    return new ErrNotAStore(`${message}. A parent of the path is a file; pass a directory path.`, { cause: err, details: { path } });
  }
  return new ErrUnknown(message, { cause: err, details: { path } });
}

/** Verifies the format marker, writing it into a database that holds nothing yet. */
async function checkMarker(db: Db, path: string, logger: Logger): Promise<void> {
  const text = await db.get(MARKER_KEY);
  if (text === undefined) {
    const anyKey = await db.keys({ limit: 1 }).all();
    if (anyKey.length > 0) {
      throw new ErrNotAStore(
        `metadata: ${path} is a LevelDB database but not a buildcache metadata store (it has no format marker). ` +
          'Pass the directory of a metadata store, or a missing or empty directory to create one; do not reuse other LevelDB databases.',
        { details: { path } },
      );
    }
    const marker: Marker = { format: FORMAT_NAME, version: FORMAT_VERSION };
    await db.put(MARKER_KEY, JSON.stringify(marker), { sync: true });
    logger.info({ path, version: FORMAT_VERSION }, 'metadata: created store');
    return;
  }
  let marker: Partial<Marker> | undefined;
  try {
    marker = JSON.parse(text) as Partial<Marker>;
  } catch {
    marker = undefined;
  }
  if (marker?.format !== FORMAT_NAME || typeof marker.version !== 'number') {
    throw new ErrNotAStore(
      `metadata: ${path} has an unreadable format marker (${JSON.stringify(text.slice(0, 80))}); it is not a metadata store ` +
        'this version can open. Move it aside to start an empty store.',
      { details: { path } },
    );
  }
  if (marker.version > FORMAT_VERSION) {
    throw new ErrNotAStore(
      `metadata: ${path} uses store format ${marker.version}, newer than the ${FORMAT_VERSION} this version knows. ` +
        'Open it with a newer buildcache, or move it aside to start an empty store.',
      { details: { path } },
    );
  }
}
