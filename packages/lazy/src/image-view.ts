/**
 * Reading files of an image from its layers, top layer first, the way an overlay mount shows them:
 * `.wh.<name>` whiteouts hide lower entries, `.wh..wh..opq` makes a directory opaque.
 */
import { posix } from 'node:path';
import { ErrNotFound } from '@buildcache/errdefs';
import type { EstargzStat } from '@buildcache/estargz';
import type { LazyLayer } from './layer.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

function clean(path: string): string {
  const p = posix.normalize(`/${path}`).slice(1);
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

/** Ancestors of `path`, nearest last (`a/b/c` → `''`, `a`, `a/b`). */
function ancestors(path: string): string[] {
  const parts = path === '' ? [] : path.split('/');
  return parts.map((_, i) => parts.slice(0, i).join('/'));
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Whether `layer` hides `path` of the layers below it (a whiteout of it or an ancestor, or an opaque ancestor). */
async function hides(layer: LazyLayer, path: string): Promise<boolean> {
  const parts = path.split('/');
  for (let i = 0; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    if (await layer.has(join(dir, `${WHITEOUT}${parts[i]}`))) return true;
  }
  for (const dir of ancestors(path)) {
    if (dir !== '' && (await layer.has(join(dir, OPAQUE)))) return true;
  }
  return false;
}

/** The topmost layer (of `layers`, base first) that shows `path`, or undefined. */
export async function locate(layers: readonly LazyLayer[], path: string): Promise<LazyLayer | undefined> {
  const p = clean(path);
  if (p === '') return layers[layers.length - 1];
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i]!;
    if (await layer.has(p)) return layer;
    if (await hides(layer, p)) return undefined;
  }
  return undefined;
}

/** Metadata of `path` in the image; ErrNotFound when no layer shows it. */
export async function statIn(layers: readonly LazyLayer[], path: string, image: string): Promise<EstargzStat> {
  const layer = await locate(layers, path);
  if (!layer) throw new ErrNotFound(`${path} is not in image ${image}`, { details: { path, reference: image } });
  return layer.stat(clean(path));
}

/** The layer holding regular file `path` (ErrNotFound when the image has none). */
export async function fileLayer(layers: readonly LazyLayer[], path: string, image: string): Promise<LazyLayer> {
  const layer = await locate(layers, path);
  if (!layer) throw new ErrNotFound(`${path} is not in image ${image}`, { details: { path, reference: image } });
  return layer;
}

/** Names in directory `path` of the image, merged over the layers (whiteouts applied). */
export async function readdirIn(layers: readonly LazyLayer[], path: string, image: string): Promise<string[]> {
  const p = clean(path);
  const names = new Set<string>();
  const hidden = new Set<string>();
  let found = false;
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i]!;
    if (p !== '' && (await hides(layer, p)) && !(await layer.has(p))) break;
    if (await layer.has(p)) {
      const st = await layer.stat(p);
      if (st.type !== 'dir') break;
      found = true;
      const own = await layer.readdir(p);
      for (const n of own) {
        if (n === OPAQUE) continue;
        if (n.startsWith(WHITEOUT)) hidden.add(n.slice(WHITEOUT.length));
        else if (!hidden.has(n)) names.add(n);
      }
      if (own.includes(OPAQUE)) break;
    }
  }
  if (!found) throw new ErrNotFound(`${path} is not a directory in image ${image}`, { details: { path, reference: image } });
  return [...names].sort();
}
