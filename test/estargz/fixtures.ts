/** eStargz test fixtures: a source tree tarred by GNU tar, conversion to a buffer, and hand-made blobs for bad input. */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, symlink, link, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync, gunzipSync } from 'node:zlib';
import { convertToEstargz, encodeFooter, parseFooter, sha256, type ConvertOptions, type ConvertResult } from '@buildcache/estargz';

export const run = promisify(execFile);

/** A deterministic pseudo-random buffer. */
export function noise(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Builds a small tree under `dir/src` and tars it with GNU tar (gzip); returns the tar.gz path. */
export async function sourceTree(dir: string): Promise<{ src: string; tarGz: string }> {
  const src = join(dir, 'src');
  const long = 'a-rather-long-directory-name-that-pushes-the-path/'.repeat(3).slice(0, -1);
  await mkdir(join(src, 'etc'), { recursive: true });
  await mkdir(join(src, 'bin'), { recursive: true });
  await mkdir(join(src, long), { recursive: true });
  await writeFile(join(src, 'etc', 'hello.txt'), 'hello world\n');
  await writeFile(join(src, 'etc', 'empty'), '');
  await writeFile(join(src, 'bin', 'big.bin'), noise(300_000, 7));
  await writeFile(join(src, long, 'deep.txt'), 'deep\n');
  await symlink('hello.txt', join(src, 'etc', 'link'));
  await link(join(src, 'etc', 'hello.txt'), join(src, 'bin', 'hard'));
  const tarGz = join(dir, 'src.tar.gz');
  await run('tar', ['-C', src, '--sort=name', '-czf', tarGz, '.']);
  return { src, tarGz };
}

/** Converts the tar at `path` into an eStargz blob held in memory. */
export async function convertFile(path: string, options: ConvertOptions = {}): Promise<{ blob: Buffer; result: ConvertResult }> {
  const parts: Buffer[] = [];
  const result = await convertToEstargz(createReadStream(path), (c) => {
    parts.push(Buffer.from(c));
    return Promise.resolve();
  }, options);
  return { blob: Buffer.concat(parts), result };
}

/** A ustar header for a regular file. */
function header(name: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b.write('0', 156, 'latin1');
  b.write('ustar\u000000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** `data` as a tar entry named stargz.index.json plus end of archive, gzipped as one member. */
export function tocMember(json: Buffer): Buffer {
  const pad = Buffer.alloc((512 - (json.length % 512)) % 512);
  return gzipSync(Buffer.concat([header('stargz.index.json', json.length), json, pad, Buffer.alloc(1024)]));
}

/** A blob of `prefix` (gzip members) followed by a TOC holding `json` and a footer. */
export function craftBlob(prefix: Buffer, json: Buffer): Buffer {
  return Buffer.concat([prefix, tocMember(json), encodeFooter(prefix.length)]);
}

/** The TOC JSON of an eStargz blob, read with plain gunzip. */
export function tocJsonOf(blob: Buffer): { tocOffset: number; json: Buffer } {
  const footer = parseFooter(blob.subarray(blob.length - 51))!;
  const tar = gunzipSync(blob.subarray(footer.tocOffset, blob.length - footer.footerSize));
  const size = Number.parseInt(tar.subarray(124, 136).toString('latin1'), 8);
  return { tocOffset: footer.tocOffset, json: tar.subarray(512, 512 + size) };
}

/** The blob with its TOC replaced by `edit(toc)`; returns the blob and the new TOC digest. */
export function rewriteToc(blob: Buffer, edit: (toc: { version: number; entries: Array<Record<string, unknown>> }) => void): { blob: Buffer; tocDigest: string } {
  const { tocOffset, json } = tocJsonOf(blob);
  const toc = JSON.parse(json.toString('utf8')) as { version: number; entries: Array<Record<string, unknown>> };
  edit(toc);
  const out = Buffer.from(JSON.stringify(toc, null, '\t'));
  return { blob: craftBlob(blob.subarray(0, tocOffset), out), tocDigest: sha256(out) };
}

/** Reads a file as text. */
export const text = async (path: string): Promise<string> => readFile(path, 'utf8');
