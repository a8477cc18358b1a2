/**
 * `buildcache import`, `export` and `images`: image archives in and out of the image store, which
 * lives beside the cache (`<root>/layers`, its images in `<root>/layers/images`). Files are read and
 * written by this process, also when the daemon does the work.
 */
import { createReadStream } from 'node:fs';
import { type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { splitName, type ExportFormat, type ImageInfo } from '@buildcache/images';
import type { Operations } from '@buildcache/server/local';
import { writeFileWhole } from '@buildcache/sys';
import { UsageError, type Flags } from './args.js';
import type { Output } from './terminal.js';
import { formatSize, table } from './units.js';

/** Imports the archive `file` (`-`: stdin) and prints what it loaded, as `docker load` does. */
export async function importCommand(ops: Operations, file: string, out: Output): Promise<void> {
  const source = file === '-' ? process.stdin : createReadStream(file);
  const loaded = await ops.importArchive(source, file === '-' ? 'stdin' : file);
  for (const img of loaded) {
    if (img.names.length === 0) out.write(`Loaded image ID: ${img.id}\n`);
    for (const n of img.names) out.write(`Loaded image: ${n}\n`);
  }
}

/** Writes the image `name` as an archive to `file` (`-`: stdout); a file appears only once complete. */
export async function exportCommand(ops: Operations, name: string, file: string, format: ExportFormat): Promise<void> {
  const archive = ops.exportArchive(name, format);
  if (file === '-') {
    await pipeline(archive, process.stdout as Writable, { end: false });
    return;
  }
  await writeFileWhole(file, archive);
}

/** An image as JSON. */
function toJSON(img: ImageInfo): Record<string, unknown> {
  return { id: img.id, names: img.names, layers: img.layers, size: img.size, created: img.created ?? null };
}

/** Lists images: a table like `docker images` (one row per name), or a JSON array. */
export async function imagesCommand(ops: Operations, format: 'table' | 'json', out: Output): Promise<void> {
  const list = await ops.images();
  if (format === 'json') {
    out.write(`${JSON.stringify(list.map(toJSON), null, 2)}\n`);
    return;
  }
  const rows: string[][] = [['REPOSITORY', 'TAG', 'IMAGE ID', 'LAYERS', 'SIZE']];
  for (const img of list) {
    const short = img.id.slice(7, 19);
    const names = img.names.length ? img.names.map(splitName) : [{ repository: '<none>', tag: '<none>' }];
    for (const n of names) rows.push([n.repository, n.tag, short, String(img.layers), formatSize(img.size)]);
  }
  out.write(`${table(rows)}\n`);
}

/** The command `import FILE`, `export NAME -o FILE` or `images` with its flags checked (before anything is opened), to run on the image store. */
export function imageCommand(command: string, arg: string, flags: Flags, out: Output): (ops: Operations) => Promise<void> {
  const format = flags.strings.get('format');
  if (command === 'import') return (ops) => importCommand(ops, arg, out);
  if (command === 'export') {
    const file = flags.strings.get('output');
    if (file === undefined) throw new UsageError('export: give -o FILE (or -o - for stdout)');
    if (format !== undefined && format !== 'oci' && format !== 'docker') throw new UsageError(`--format: unknown archive format ${JSON.stringify(format)}; use oci or docker`);
    return (ops) => exportCommand(ops, arg, file, format ?? 'oci');
  }
  if (format !== undefined && format !== 'table' && format !== 'json') throw new UsageError(`--format: unknown format ${JSON.stringify(format)}; use table or json`);
  return (ops) => imagesCommand(ops, format ?? 'table', out);
}
