/**
 * Exact re-export: the original tar stream of a layer, rebuilt from its tar-split metadata and its
 * files. File reads run ahead of the output (bounded in count and bytes) and the output comes in
 * chunks of about 1 MiB, so a layer of many small files streams near the speed of reading it.
 */
import * as fs from 'node:fs';
import { constants, createReadStream } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import pLimit from 'p-limit';
import { ErrCorruptLayer } from '@buildcache/errdefs';
import type { FileFrame } from './tar-split.js';

/** Output chunk size; also the largest file read whole ahead of the output (bigger ones stream in order). */
const CHUNK = 1 << 20;
/** Most output chunks (and large files) prepared ahead of the output. */
const AHEAD_CHUNKS = 32;
/** Concurrent file reads. */
const READERS = 16;

/** Errnos of opening a file of the metadata that mean it is not (or no longer) a file of the layer. */
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);
const fsOpen = promisify(fs.open);
const fsRead = promisify(fs.read);
const fsClose = promisify(fs.close);

/** Reads exactly `n` bytes at a time from an async iterable of chunks (the gunzipped metadata). */
class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  readonly #it: AsyncIterator<Buffer>;
  constructor(src: AsyncIterable<Buffer>) {
    this.#it = src[Symbol.asyncIterator]();
  }
  async take(n: number): Promise<Buffer | undefined> {
    if (this.#buf.length < n) {
      // a frame across chunks: only its own bytes are copied
      const out = Buffer.allocUnsafe(n);
      let got = this.#buf.copy(out);
      while (got < n) {
        const r = await this.#it.next();
        if (r.done) {
          if (got === 0) return undefined;
          throw new ErrCorruptLayer('tar-split metadata is truncated');
        }
        const used = r.value.copy(out, got);
        got += used;
        this.#buf = r.value.subarray(used);
      }
      return out;
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

/** The frames of a tar-split file: raw bytes, or a file whose body comes from the tree. */
async function* frames(metaFile: string, layer: string): AsyncGenerator<Buffer | FileFrame> {
  const reader = new FrameReader(createReadStream(metaFile, { highWaterMark: CHUNK }).pipe(createGunzip({ chunkSize: CHUNK })));
  for (;;) {
    const head = await reader.take(5);
    if (!head) return;
    const len = head.readUInt32BE(1);
    const data = len === 0 ? Buffer.alloc(0) : await reader.take(len);
    if (!data) throw new ErrCorruptLayer(`layer ${layer}: tar-split metadata is truncated`, { details: { id: layer } });
    yield head[0] === 0x53 ? data : (JSON.parse(data.toString('utf8')) as FileFrame);
  }
}

/** Opens the layer's files for reading, never through a symlink and never outside the root. */
class TreeFiles {
  /** Real paths of the directories seen so far (the tree is mounted read-only: they do not move). */
  readonly #dirs = new Map<string, Promise<string | undefined>>();
  constructor(
    private readonly root: string,
    private readonly layer: string,
  ) {}

  missing(path: string, why = 'is missing from the layer'): ErrCorruptLayer {
    return new ErrCorruptLayer(`layer ${this.layer}: file ${JSON.stringify(path)} of its tar-split metadata ${why}`, { details: { id: this.layer, entry: path } });
  }

  async open(path: string): Promise<number> {
    const dir = posix.dirname(path);
    let real = this.#dirs.get(dir);
    if (!real) {
      if (this.#dirs.size >= 65536) this.#dirs.clear();
      real = realpath(join(this.root, dir)).then(
        (r) => (r === this.root || r.startsWith(this.root + sep) ? r : undefined),
        () => undefined,
      );
      this.#dirs.set(dir, real);
    }
    const parent = await real;
    if (parent === undefined) throw this.missing(path);
    return fsOpen(join(parent, posix.basename(path)), constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) =>
      Promise.reject(GONE.has(err.code ?? '') ? this.missing(path) : err),
    );
  }

  /** Reads the ranges `[offset, length, …]` of an open file into `out` from `at`; fails when the file is shorter. */
  async read(fd: number, path: string, ranges: readonly number[], out: Buffer, at: number): Promise<void> {
    for (let i = 0; i < ranges.length; i += 2) {
      const end = at + ranges[i + 1]!;
      for (let pos = ranges[i]!; at < end; ) {
        const { bytesRead } = await fsRead(fd, out, at, end - at, pos);
        if (bytesRead === 0) throw this.missing(path, 'is shorter than its tar entry');
        at += bytesRead;
        pos += bytesRead;
      }
    }
  }

  /** Reads a (small) file's body, the ranges its frame names, into `out` at `at`. */
  async bodyInto(f: FileFrame, out: Buffer, at: number): Promise<void> {
    const fd = await this.open(f.p);
    try {
      await this.read(fd, f.p, f.s ?? [0, f.n], out, at);
    } finally {
      await fsClose(fd);
    }
  }

  /** A large file body, in chunks of up to CHUNK bytes, in order. */
  async *stream(f: FileFrame): AsyncGenerator<Buffer> {
    const fd = await this.open(f.p);
    try {
      const ranges = f.s ?? [0, f.n];
      for (let i = 0; i < ranges.length; i += 2) {
        const end = ranges[i]! + ranges[i + 1]!;
        for (let pos = ranges[i]!; pos < end; pos += CHUNK) {
          const n = Math.min(CHUNK, end - pos);
          const out = Buffer.allocUnsafe(n);
          await this.read(fd, f.p, [pos, n], out, 0);
          yield out;
        }
      }
    } finally {
      await fsClose(fd);
    }
  }
}

/** An output chunk being filled: raw bytes are copied in, small files read straight into their place. */
interface Chunk {
  readonly buf: Buffer;
  used: number;
  readonly reads: Promise<void>[];
}

/**
 * Rebuilds the original tar stream of layer `layer` from its tar-split file and its tree at `root`
 * (the caller checks it against the diffID: `verified`).
 */
export async function* reassemble(metaFile: string, root: string, layer: string): AsyncGenerator<Buffer> {
  const files = new TreeFiles(await realpath(root), layer);
  const limit = pLimit(READERS);
  let stopped = false;
  /** Output in order: chunks being filled, and large files streamed when reached. */
  const queue: Array<Chunk | FileFrame> = [];
  let filling: Chunk | undefined;
  const seal = (): void => {
    if (filling?.used) queue.push(filling);
    filling = undefined;
  };
  const room = (): Chunk => (filling ??= { buf: Buffer.allocUnsafe(CHUNK), used: 0, reads: [] });
  /** Yields the oldest piece of output. */
  async function* next(): AsyncGenerator<Buffer> {
    const piece = queue.shift()!;
    if ('buf' in piece) {
      await Promise.all(piece.reads);
      yield piece.buf.subarray(0, piece.used);
      return;
    }
    yield* files.stream(piece);
  }
  try {
    for await (const f of frames(metaFile, layer)) {
      if (Buffer.isBuffer(f)) {
        for (let at = 0; at < f.length; ) {
          const c = room();
          const n = f.copy(c.buf, c.used, at);
          c.used += n;
          at += n;
          if (c.used === CHUNK) seal();
        }
      } else if (f.n > CHUNK) {
        seal();
        queue.push(f);
      } else {
        if (room().used + f.n > CHUNK) seal();
        const c = room();
        const at = c.used;
        const read = limit(() => (stopped ? Promise.resolve() : files.bodyInto(f, c.buf, at)));
        read.catch(() => undefined); // awaited in order; a failure surfaces there
        c.reads.push(read);
        c.used += f.n;
      }
      while (queue.length > AHEAD_CHUNKS) yield* next();
    }
    seal();
    while (queue.length) yield* next();
  } finally {
    // reads still running hold files open: the tree is unmounted after this
    stopped = true;
    await Promise.allSettled([...queue, ...(filling ? [filling] : [])].flatMap((p) => ('reads' in p ? p.reads : [])));
  }
}
