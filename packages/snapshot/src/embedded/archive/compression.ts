/**
 * Layer compression: gzip through node:zlib, zstd through zlib when this Node has it, else through
 * the `zstd` command over pipes. Compression is taken from the media type and checked against the
 * stream's magic bytes.
 */
import type { ByteStream } from './tar-reader.js';
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Readable, pipeline } from 'node:stream';
import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { ErrCorruptLayer, ErrFailedPrecondition, ErrInvalidArgument } from '@buildcache/errdefs';
import { MEDIA_TYPE_DOCKER_LAYER, checkCompression, compressionOf } from '../../labels.js';
import type { Compression } from '../../labels.js';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** Last three bytes of a zstd skippable frame's magic (little-endian 0x184D2A5?); the first is 0x5?. */
const ZSTD_SKIPPABLE_TAIL = Buffer.from([0x2a, 0x4d, 0x18]);
const CHUNK = 256 * 1024;
/** Output chunk of decompression: each is one thread-pool job, and fewer small files span two. */
const DECOMPRESSED_CHUNK = 1 << 20;

/**
 * The compression the first bytes of a stream show (`uncompressed` when no magic matches). A zstd
 * stream may begin with a skippable frame (magic 0x184D2A50–0x184D2A5F) instead of a data frame.
 */
export function detectCompression(head: Uint8Array): Compression {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 2 && b.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (b.length >= 4 && b.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  if (b.length >= 4 && (b[0]! & 0xf0) === 0x50 && b.subarray(1, 4).equals(ZSTD_SKIPPABLE_TAIL)) return 'zstd';
  return 'uncompressed';
}

/**
 * The compression of a layer media type; ErrInvalidArgument for a media type that is not a layer.
 * Docker's plain `…diff.tar` is returned as `auto` (containerd detects its compression).
 */
export function layerCompression(mediaType: string): Compression | 'auto' {
  if (mediaType === MEDIA_TYPE_DOCKER_LAYER) return 'auto';
  const c = compressionOf(mediaType);
  if (!c) throw new ErrInvalidArgument(`no processor for media type ${JSON.stringify(mediaType)}: not a layer`);
  return c;
}

/** ErrFailedPrecondition for a missing `zstd` command. */
function zstdMissing(cause: unknown): ErrFailedPrecondition {
  return new ErrFailedPrecondition('zstd layers need the `zstd` command, which is not installed: apt-get install zstd', { cause });
}

type ZlibWithZstd = typeof zlib & {
  createZstdDecompress?: (options?: object) => Transform;
  createZstdCompress?: (options?: object) => Transform;
};

/** A duplex over `zstd args…` reading stdin and writing stdout; a non-zero exit destroys it with an error. */
function zstdProcess(args: string[], failure: (stderr: string) => Error): Duplex {
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.stdin.on('error', () => undefined); // EPIPE when zstd exits early; the exit status tells why
  child.on('error', (err: NodeJS.ErrnoException) => duplex.destroy(err.code === 'ENOENT' ? zstdMissing(err) : err));
  child.on('close', (code, signal) => {
    if (code !== 0 && !duplex.destroyed) duplex.destroy(failure(stderr.trim() || `zstd exited with ${code ?? signal}`));
  });
  duplex.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return duplex;
}

/** A decompressing transform for `compression`. */
function decompressor(compression: Exclude<Compression, 'uncompressed'>): Duplex {
  if (compression === 'gzip') return zlib.createGunzip({ chunkSize: DECOMPRESSED_CHUNK });
  const z = zlib as ZlibWithZstd;
  if (typeof z.createZstdDecompress === 'function') return z.createZstdDecompress({ chunkSize: DECOMPRESSED_CHUNK });
  return zstdProcess(['-d', '-c', '-q'], (msg) => new ErrCorruptLayer(`zstd decompression failed: ${msg}`));
}

/** A compressing transform for `compression` (`level`: gzip 1–9, zstd 1–19). */
export function compressor(compression: Compression, level?: number): Duplex {
  checkCompression(compression);
  if (compression === 'uncompressed') return new PassThrough();
  if (compression === 'gzip') return zlib.createGzip({ chunkSize: CHUNK, ...(level === undefined ? {} : { level }) });
  const z = zlib as ZlibWithZstd;
  if (typeof z.createZstdCompress === 'function') return z.createZstdCompress({ chunkSize: CHUNK });
  return zstdProcess(['-c', '-q', `-${level ?? 3}`], (msg) => new Error(`zstd compression failed: ${msg}`));
}

/** Peeks the first bytes of `source` and yields all of it. */
async function* withMagicCheck(
  source: ByteStream,
  check: (head: Buffer) => void,
): AsyncGenerator<Uint8Array> {
  let head = Buffer.alloc(0);
  let checked = false;
  for await (const chunk of source) {
    if (checked) {
      yield chunk;
      continue;
    }
    head = Buffer.concat([head, chunk]);
    if (head.length >= 4) {
      check(head);
      checked = true;
      yield head;
    }
  }
  if (!checked) {
    if (head.length > 0) check(head);
    if (head.length > 0) yield head;
  }
}

/**
 * The decompressed bytes of a layer stream. `compression` comes from the media type (`auto`
 * detects it; an unknown name is ErrInvalidArgument); a stream whose magic bytes disagree with it
 * gives ErrCorruptLayer, as does a truncated or otherwise broken compressed stream.
 */
export function decompress(source: ByteStream, compression: Compression | 'auto'): AsyncIterable<Buffer> {
  if (compression !== 'auto') checkCompression(compression);
  let actual: Compression = compression === 'auto' ? 'uncompressed' : compression;
  const checked = withMagicCheck(source, (head) => {
    const seen = detectCompression(head);
    if (compression === 'auto') actual = seen;
    else if (seen !== compression) {
      throw new ErrCorruptLayer(`layer is labelled ${compression} but its data is ${seen === 'uncompressed' ? 'not compressed' : seen}`);
    }
  });
  return (async function* () {
    const it = checked[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) return;
    const rest = (async function* () {
      yield first.value;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    })();
    if (actual === 'uncompressed') {
      for await (const c of rest) yield Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      return;
    }
    const transform = decompressor(actual);
    const out = pipeline(Readable.from(rest, { objectMode: false }), transform, () => undefined) as Duplex;
    try {
      for await (const c of out as AsyncIterable<Buffer>) yield c;
    } catch (err) {
      if (err instanceof ErrCorruptLayer || err instanceof ErrFailedPrecondition) throw err;
      const code = (err as { code?: string }).code;
      if (actual === 'gzip' && typeof code === 'string' && code.startsWith('Z_')) {
        throw new ErrCorruptLayer(`gzip layer is corrupt or truncated: ${(err as Error).message}`, { cause: err });
      }
      throw err;
    } finally {
      out.destroy();
    }
  })();
}
