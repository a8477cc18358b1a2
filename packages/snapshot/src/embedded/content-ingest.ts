/**
 * Ingests of the embedded content store: `<root>/content/ingest/<sha256(ref)>/` holding `data`,
 * `ref`, `startedat`, `total` / `expected` when known, and `expireat` when the ingest was last
 * opened without a lease. The data file's size is the offset a write resumes at; its mtime is the
 * last activity.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrFailedPrecondition, ErrNotFound, ErrOutOfRange } from '@buildcache/errdefs';
import type { ContentWriter, IngestStatus } from '../types.js';

/** Directory of ingest `ref` under `ingestRoot`. */
export function ingestDir(ingestRoot: string, ref: string): string {
  return join(ingestRoot, createHash('sha256').update(ref).digest('hex'));
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Status of the ingest in `dir`, or undefined when it does not exist (or is half-made). */
export async function readIngest(dir: string): Promise<IngestStatus | undefined> {
  const ref = await readOptional(join(dir, 'ref'));
  if (ref === undefined) return undefined;
  let st;
  try {
    st = await stat(join(dir, 'data'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const [total, expected, started] = await Promise.all(['total', 'expected', 'startedat'].map((f) => readOptional(join(dir, f))));
  return {
    ref,
    offset: st.size,
    total: Number(total ?? 0),
    ...(expected ? { expected } : {}),
    startedAt: new Date(Number(started ?? st.birthtimeMs)),
    updatedAt: st.mtime,
  };
}

/** Every ingest under `ingestRoot`, with its directory. */
export async function listIngests(ingestRoot: string): Promise<Array<{ dir: string; status?: IngestStatus }>> {
  let names: string[];
  try {
    names = await readdir(ingestRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return Promise.all(
    names.map(async (n) => {
      const dir = join(ingestRoot, n);
      const status = await readIngest(dir);
      return status ? { dir, status } : { dir };
    }),
  );
}

/**
 * When an unleased ingest in `dir` may be collected (ms), or undefined when it was always opened
 * under a lease (then it lives exactly as long as a lease holds it, as in containerd).
 */
export async function ingestExpiry(dir: string): Promise<number | undefined> {
  const v = await readOptional(join(dir, 'expireat'));
  return v === undefined ? undefined : Number(v);
}

/**
 * Creates the ingest directory of `ref` if needed and records total/expected when given; opened
 * without a lease (`expireAt` given), it gets that expiry, as containerd gives it 24 h.
 */
export async function ensureIngest(dir: string, ref: string, now: number, total?: number, expected?: string, expireAt?: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  if ((await readOptional(join(dir, 'ref'))) === undefined) {
    await writeFile(join(dir, 'startedat'), String(now));
    await (await open(join(dir, 'data'), 'a')).close();
    await writeFile(join(dir, 'ref'), ref);
  }
  if (total !== undefined && total > 0) await writeFile(join(dir, 'total'), String(total));
  if (expected !== undefined && expected !== '') await writeFile(join(dir, 'expected'), expected);
  if (expireAt !== undefined) await writeFile(join(dir, 'expireat'), String(expireAt));
}

/** What a writer hands back to the store when the caller commits. */
export interface CommitRequest {
  readonly ref: string;
  readonly dir: string;
  readonly digest: string;
  readonly size: number;
  readonly labels?: Readonly<Record<string, string>>;
}

/** A writer on one ingest; the store owns locking and the final rename. */
export class IngestWriter implements ContentWriter {
  private closed = false;

  private constructor(
    readonly ref: string,
    readonly dir: string,
    private readonly fh: FileHandle,
    private hash: Hash,
    private pos: number,
    private readonly defaults: { total?: number; expected?: string },
    private readonly finish: (req: CommitRequest) => Promise<string>,
    private readonly release: () => void,
  ) {}

  /** Opens the ingest's data file and re-hashes what it already holds so the write can resume. */
  static async open(
    ref: string,
    dir: string,
    defaults: { total?: number; expected?: string },
    finish: (req: CommitRequest) => Promise<string>,
    release: () => void,
  ): Promise<IngestWriter> {
    const path = join(dir, 'data');
    const fh = await open(path, 'r+');
    try {
      const size = (await fh.stat()).size;
      const hash = createHash('sha256');
      if (size > 0) {
        for await (const chunk of createReadStream(path, { start: 0, end: size - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
      }
      return new IngestWriter(ref, dir, fh, hash, size, defaults, finish, release);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get offset(): number {
    return this.pos;
  }

  /**
   * Appends `chunk`. With `at` (containerd's write offset): 0 restarts the ingest, any other value
   * must equal the current offset, else ErrOutOfRange.
   */
  async write(chunk: Uint8Array, at?: number): Promise<void> {
    this.assertOpen();
    if (at !== undefined && at !== this.pos) {
      if (at !== 0) {
        throw new ErrOutOfRange(`write @${at} must occur at current offset ${this.pos}`, { details: { id: this.ref } });
      }
      await this.fh.truncate(0);
      this.hash = createHash('sha256');
      this.pos = 0;
    }
    let done = 0;
    while (done < chunk.byteLength) {
      const { bytesWritten } = await this.fh.write(chunk, done, chunk.byteLength - done, this.pos + done);
      done += bytesWritten;
    }
    this.hash.update(chunk);
    this.pos += chunk.byteLength;
  }

  async commit(options?: { size?: number; expected?: string; labels?: Readonly<Record<string, string>> }): Promise<string> {
    this.assertOpen();
    const size = options?.size ?? this.defaults.total ?? 0;
    const expected = options?.expected ?? this.defaults.expected;
    const digest = `sha256:${this.hash.copy().digest('hex')}`;
    try {
      if (size > 0 && size !== this.pos) {
        throw new ErrFailedPrecondition(`${JSON.stringify(this.ref)} failed size validation: ${this.pos} != ${size}`, { details: { id: this.ref } });
      }
      if (expected && expected !== digest) {
        throw new ErrFailedPrecondition(`unexpected commit digest ${digest}, expected ${expected}`, { details: { id: this.ref, digest } });
      }
      await this.fh.sync();
      await this.fh.chmod(0o444);
      return await this.finish({ ref: this.ref, dir: this.dir, digest, size: this.pos, ...(options?.labels ? { labels: options.labels } : {}) });
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.fh.close();
    } finally {
      this.release();
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ErrFailedPrecondition(`writer for ${JSON.stringify(this.ref)} is closed`, { details: { id: this.ref } });
  }
}

/** ErrNotFound for a missing ingest, worded as containerd does. */
export function ingestNotFound(ref: string): ErrNotFound {
  return new ErrNotFound(`reference ${ref}: not found`, { details: { id: ref } });
}
