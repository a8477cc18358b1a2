/** Builds the lookup index of a checked TOC: nodes by path, directory children, file chunks. */
import { ErrEstargzToc } from '@buildcache/errdefs';
import { normalizeName, type Chunk, type Toc, type TocEntry, type TocNode } from './toc.js';

/** A chunk before its end offset and length are known. */
interface RawChunk {
  offset: number;
  innerOffset: number;
  chunkOffset: number;
  chunkSize: number | undefined;
  digest: string | undefined;
  nextOffset: number;
}

/** The index of one layer's TOC. */
export interface TocIndex {
  readonly nodes: Map<string, TocNode>;
  /** Every chunk of every file in blob order, with the node it belongs to. */
  readonly chunks: ReadonlyArray<{ readonly node: TocNode; readonly chunk: Chunk }>;
}

const baseName = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

function dirEntry(path: string): TocEntry {
  return { name: `${path}/`, type: 'dir', mode: 0o755 };
}

/**
 * Indexes `toc` of blob `blob` (TOC at `tocOffset`): missing parent directories are implied, a
 * `chunk` entry continues the regular file before it, each chunk ends where the next gzip member
 * starts (the TOC for the last). Chunk digests are required unless `requireDigests` is false (a
 * single-chunk file may rely on its `digest`).
 */
export function indexToc(toc: Toc, blob: string, tocOffset: number, requireDigests: boolean): TocIndex {
  const nodes = new Map<string, TocNode>();
  const raw = new Map<TocNode, RawChunk[]>();
  const order: Array<{ node: TocNode; chunk: RawChunk }> = [];
  const root: TocNode = { path: '', entry: { name: './', type: 'dir', mode: 0o755 }, children: new Map(), chunks: [] };
  nodes.set('', root);
  const parentOf = (path: string): TocNode => {
    const key = path.slice(0, Math.max(path.lastIndexOf('/'), 0));
    const found = nodes.get(key);
    if (found) {
      if (!found.children) throw new ErrEstargzToc(`TOC of ${blob}: ${JSON.stringify(path)} lies under ${JSON.stringify(key)}, which is not a directory`, { details: { digest: blob, entry: path } });
      return found;
    }
    const made: TocNode = { path: key, entry: dirEntry(key), children: new Map(), chunks: [] };
    parentOf(key).children!.set(baseName(key), made);
    nodes.set(key, made);
    return made;
  };
  let last: TocNode | undefined;
  for (const entry of toc.entries) {
    const path = normalizeName(entry.name, blob);
    if (entry.type === 'hardlink' && entry.linkName !== undefined) normalizeName(entry.linkName, blob);
    if (entry.type === 'chunk') {
      if (!last || last.path !== path) throw new ErrEstargzToc(`TOC of ${blob}: chunk of ${JSON.stringify(path)} does not follow its file`, { details: { digest: blob, entry: path } });
      const chunk = rawChunk(entry, blob, path);
      raw.get(last)!.push(chunk);
      order.push({ node: last, chunk });
      continue;
    }
    if (path === '') continue; // the root itself (`./`)
    const parent = parentOf(path);
    const old = nodes.get(path);
    const node: TocNode = { path, entry, children: entry.type === 'dir' ? (old?.children ?? new Map()) : undefined, chunks: [] };
    nodes.set(path, node);
    parent.children!.set(baseName(path), node);
    raw.set(node, []);
    last = node;
    if (entry.type === 'reg' && (entry.size ?? 0) > 0) {
      const chunk = rawChunk(entry, blob, path);
      raw.get(node)!.push(chunk);
      order.push({ node, chunk });
    }
  }
  // Each chunk's data ends where the next gzip member (a following entry with innerOffset 0) starts.
  let next = tocOffset;
  for (let i = order.length - 1; i >= 0; i--) {
    const c = order[i]!.chunk;
    if (c.offset >= next) {
      throw new ErrEstargzToc(`TOC of ${blob}: chunk of ${JSON.stringify(order[i]!.node.path)} at offset ${c.offset} does not come before the next one (${next})`, {
        details: { digest: blob, entry: order[i]!.node.path },
      });
    }
    c.nextOffset = next;
    if (c.innerOffset === 0) next = c.offset;
  }
  const chunks: Array<{ node: TocNode; chunk: Chunk }> = [];
  const byRaw = new Map<RawChunk, Chunk>();
  for (const [node, list] of raw) {
    const size = node.entry.size ?? 0;
    list.sort((a, b) => a.chunkOffset - b.chunkOffset);
    list.forEach((c, i) => {
      const end = list[i + 1]?.chunkOffset ?? size;
      const length = end - c.chunkOffset;
      if ((i === 0 && c.chunkOffset !== 0) || length <= 0 || (c.chunkSize !== undefined && c.chunkSize !== 0 && c.chunkSize !== length)) {
        throw new ErrEstargzToc(`TOC of ${blob}: chunks of ${JSON.stringify(node.path)} do not tile its ${size} bytes`, { details: { digest: blob, entry: node.path } });
      }
      let digest = c.digest;
      if (digest === undefined && list.length === 1) digest = node.entry.digest;
      if (digest === undefined && requireDigests) {
        throw new ErrEstargzToc(`TOC of ${blob}: chunk ${c.chunkOffset} of ${JSON.stringify(node.path)} has no chunkDigest; it cannot be verified`, { details: { digest: blob, entry: node.path } });
      }
      const chunk: Chunk = { offset: c.offset, innerOffset: c.innerOffset, nextOffset: c.nextOffset, chunkOffset: c.chunkOffset, chunkSize: length, digest };
      node.chunks.push(chunk);
      byRaw.set(c, chunk);
    });
  }
  for (const { node, chunk } of order) chunks.push({ node, chunk: byRaw.get(chunk)! });
  return { nodes, chunks };
}

function rawChunk(entry: TocEntry, blob: string, path: string): RawChunk {
  if (entry.offset === undefined || entry.offset === 0) {
    throw new ErrEstargzToc(`TOC of ${blob}: data of ${JSON.stringify(path)} has no offset`, { details: { digest: blob, entry: path } });
  }
  return {
    offset: entry.offset,
    innerOffset: entry.innerOffset ?? 0,
    chunkOffset: entry.chunkOffset ?? 0,
    chunkSize: entry.chunkSize,
    digest: entry.chunkDigest,
    nextOffset: 0,
  };
}
