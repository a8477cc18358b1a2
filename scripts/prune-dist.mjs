#!/usr/bin/env node
/**
 * Removes compiled outputs whose TypeScript source is gone. `tsc -b` never deletes what it emitted
 * for a file since deleted or renamed, and turbo restores `dist/**` from its cache on top of what is
 * there, so a deleted test kept running (the harness runs every `*.test.js` under the dist
 * directories). Every project emits source maps, and each map names its source: an output whose
 * map's source is missing goes, with its map (`x.js` + `x.js.map`, `x.d.ts` + `x.d.ts.map`).
 *
 *   node scripts/prune-dist.mjs [DIR...]     the given output directories (default: ./dist)
 *   node scripts/prune-dist.mjs --workspaces the dist directory of every workspace of the repository
 *
 * Prints one line per removed file; nothing when nothing is stale.
 */
import { open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every `*.map` file under `dir` (none when it does not exist). */
async function maps(dir) {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch((err) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.map')).map((e) => join(e.parentPath ?? e.path, e.name));
}

/** The source a map names, resolved (undefined when it names none). tsc writes `sources` near the start. */
async function sourceOf(map) {
  const fh = await open(map, 'r');
  let head;
  try {
    const { buffer, bytesRead } = await fh.read({ buffer: Buffer.alloc(1024), position: 0 });
    head = buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
  let parsed;
  const m = /"sourceRoot":"((?:[^"\\]|\\.)*)","sources":\["((?:[^"\\]|\\.)*)"/.exec(head);
  if (m) parsed = { sourceRoot: JSON.parse(`"${m[1]}"`), sources: [JSON.parse(`"${m[2]}"`)] };
  else parsed = JSON.parse(await readFile(map, 'utf8'));
  const source = parsed.sources?.[0];
  return typeof source === 'string' ? resolve(dirname(map), parsed.sourceRoot ?? '', source) : undefined;
}

const exists = (path) => stat(path).then(() => true, () => false);

/** Removes the stale outputs under `dir`. */
async function prune(dir) {
  const all = await maps(dir);
  // A few at a time: a build has some hundreds of maps.
  for (let at = 0; at < all.length; at += 64) {
    await Promise.all(all.slice(at, at + 64).map(async (map) => {
      const source = await sourceOf(map);
      if (source === undefined || (await exists(source))) return;
      for (const file of [map, map.slice(0, -'.map'.length)]) {
        if (!(await exists(file))) continue;
        await rm(file, { force: true });
        console.log(`prune-dist: removed ${relative(process.cwd(), file)} (its source ${relative(process.cwd(), source)} is gone)`);
      }
    }));
  }
}

/** The dist directory of every workspace named in the repository's package.json. */
async function workspaceDists() {
  const { workspaces = [] } = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8'));
  return workspaces.map((w) => join(repo, w, 'dist'));
}

const args = process.argv.slice(2);
const dirs = args[0] === '--workspaces' ? await workspaceDists() : args.length ? args.map((d) => resolve(d)) : [resolve('dist')];
for (const dir of dirs) await prune(dir);
