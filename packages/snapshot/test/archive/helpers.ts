/**
 * Helpers of the archive tests: temp dirs, tree snapshots (everything the applier must keep),
 * layer building with our tar writer, overlay mounts, an in-memory content store.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrNotFound } from '@buildcache/errdefs';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { TarWriter } from '../../src/embedded/archive/index.js';
import type { TarWriteEntry } from '../../src/embedded/archive/index.js';
import { lsetxattr } from '@buildcache/sys';
import { listXattrs } from '../../src/embedded/archive/xattrs.js';
import { unmount } from '../../src/mount.js';
import type { ContentInfo, ContentStore, ContentWriter, IngestStatus } from '../../src/types.js';

export const execFileP = promisify(execFile);

/** Runs a command, returns stdout. */
export async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { cwd, maxBuffer: 64 << 20, encoding: 'utf8' });
  return stdout;
}

const cleanups: Array<() => Promise<void>> = [];

/** A temp dir removed by `cleanup()`. */
export async function tempDir(prefix = 'bc-archive-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Mounts an overlay; unmounted by `cleanup()` (before temp dirs are removed). */
export async function mountOverlay(lowers: string[], upper: string, work: string, target: string): Promise<void> {
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`, target]);
  cleanups.unshift(() => unmount(target));
}

/** Undoes everything `tempDir` and `mountOverlay` made. */
export async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0)) await c().catch(() => undefined);
}

/** Concatenates an async iterable of chunks. */
export async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** A tar built with our writer from entries with optional string/Buffer bodies. */
export async function buildTar(entries: Array<TarWriteEntry & { body?: string | Buffer }>, end = true): Promise<Buffer> {
  const parts: Buffer[] = [];
  const w = new TarWriter((c) => {
    parts.push(Buffer.from(c));
  });
  for (const e of entries) {
    const body = typeof e.body === 'string' ? Buffer.from(e.body) : e.body;
    await w.add({ ...e, ...(body ? { size: body.length } : {}) }, body);
  }
  if (end) await w.finish();
  else await w.flush();
  return Buffer.concat(parts);
}

/** Default fields of a test entry. */
export const E = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 } as const;

/** Everything the applier must preserve about a tree, by relative path. */
export async function snapshotTree(root: string, options: { xattrs?: boolean } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      let desc = `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid}`;
      if (!st.isDirectory()) desc += ` mtime=${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isFile()) {
        desc += ` size=${st.size} sha=${createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 16)}`;
        if (st.nlink > 1) {
          const key = `${st.ino}`;
          if (!inodes.has(key)) inodes.set(key, r);
          desc += ` inode-of=${inodes.get(key)}`;
        }
      }
      if (st.isSymbolicLink()) desc += ` -> ${await readlink(p)}`;
      if (st.isCharacterDevice() || st.isBlockDevice()) desc += ` rdev=${st.rdev}`;
      if (options.xattrs) {
        const [x] = await listXattrs([p]);
        const xs = [...(x ?? new Map<string, Buffer>())].map(([k, v]) => `${k}=${v.toString('hex')}`).sort();
        if (xs.length) desc += ` xattrs=${xs.join(',')}`;
      }
      out[r] = desc;
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  // directory mtimes are checked too (set after their content)
  for (const r of Object.keys(out)) {
    const st = await lstat(join(root, r));
    if (st.isDirectory()) out[r] += ` mtime=${Math.floor(st.mtimeMs / 1000)}`;
  }
  return out;
}

/** Sets an xattr (test setup). */
export async function setXattr(path: string, name: string, value: string): Promise<void> {
  await lsetxattr(path, name, Buffer.from(value));
}

/** Byte-for-byte listing of a directory tree (for the sentinel checks). */
export async function fingerprint(root: string): Promise<string> {
  return JSON.stringify(await snapshotTree(root));
}

/** A minimal in-memory ContentStore (the real one is tested elsewhere). */
export class MemoryContentStore implements ContentStore {
  readonly blobs = new Map<string, { data: Buffer; labels: Record<string, string> }>();
  readonly leases: string[] = [];

  async info(digest: string): Promise<ContentInfo> {
    const b = this.blobs.get(digest);
    if (!b) throw new ErrNotFound(`content ${digest} not found`);
    return { digest, size: b.data.length, createdAt: new Date(0), updatedAt: new Date(0), labels: { ...b.labels } };
  }
  async update(info: { digest: string; labels: Readonly<Record<string, string>> }): Promise<ContentInfo> {
    const b = this.blobs.get(info.digest);
    if (!b) throw new ErrNotFound(info.digest);
    b.labels = { ...info.labels };
    return this.info(info.digest);
  }
  async *walk(): AsyncIterable<ContentInfo> {
    for (const d of this.blobs.keys()) yield await this.info(d);
  }
  async delete(digest: string): Promise<void> {
    this.blobs.delete(digest);
  }
  async *read(digest: string): AsyncIterable<Uint8Array> {
    const b = this.blobs.get(digest);
    if (!b) throw new ErrNotFound(`content ${digest} not found`);
    for (let i = 0; i < b.data.length; i += 65536) yield b.data.subarray(i, i + 65536);
  }
  /** Stores a blob directly; returns its digest. */
  put(data: Buffer, labels: Record<string, string> = {}): string {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    this.blobs.set(digest, { data, labels });
    return digest;
  }
  async writer(_ref: string, options?: { lease?: string }): Promise<ContentWriter> {
    const parts: Buffer[] = [];
    if (options?.lease) this.leases.push(options.lease);
    return {
      offset: 0,
      write: async (c) => {
        parts.push(Buffer.from(c));
      },
      commit: async (o) => {
        const data = Buffer.concat(parts);
        const digest = this.put(data, { ...(o?.labels ?? {}) });
        if (o?.expected && o.expected !== digest) throw new Error('digest mismatch');
        if (o?.size !== undefined && o.size !== data.length) throw new Error('size mismatch');
        return digest;
      },
      close: async () => undefined,
    };
  }
  async status(ref: string): Promise<IngestStatus> {
    throw new ErrNotFound(ref);
  }
  async listStatuses(): Promise<IngestStatus[]> {
    return [];
  }
  async abort(): Promise<void> {}
}

/** A debug-level logger that keeps its records, for tests that check what was logged. */
export function recordingLogger(): { logger: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, records };
}
