/**
 * The deterministic differ as a byte stream, and `docker diff`'s view of it: what a read-write
 * layer (or a layer without tar-split data) changed over the tree under it.
 */
import { once } from 'node:events';
import { lstat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough } from 'node:stream';
import { TarReader, writeDiff } from '@buildcache/snapshot';
import { entryPath } from './tar-split.js';

/** One changed path, as `docker diff` prints it: A added, C changed, D deleted. */
export interface Change {
  readonly path: string;
  readonly kind: 'A' | 'C' | 'D';
}

/** The layer tar of the changes from `lower` (none: empty) to `upper`, both directory trees. */
export async function* diffTar(lower: string | undefined, upper: string): AsyncGenerator<Buffer> {
  const pass = new PassThrough({ highWaterMark: 1 << 20 });
  const stop = new AbortController();
  const source = { kind: 'trees' as const, upper, ...(lower === undefined ? {} : { lower }) };
  const writing = writeDiff(source, async (chunk) => {
    if (!pass.write(chunk)) await once(pass, 'drain', { signal: stop.signal });
  }, { signal: stop.signal }).then(
    () => void pass.end(),
    (err: unknown) => void pass.destroy(err as Error),
  );
  try {
    for await (const c of pass as AsyncIterable<Buffer>) yield c;
  } finally {
    stop.abort();
    pass.destroy();
    await writing;
  }
}

const WHITEOUT = '.wh.';

/** The changes from `lower` to `upper`, in the differ's order (depth first, names sorted). */
export async function changesOf(lower: string | undefined, upper: string): Promise<Change[]> {
  const reader = new TarReader(diffTar(lower, upper));
  const out: Change[] = [];
  for (let h = await reader.next(); h; h = await reader.next()) {
    const path = entryPath(h.name);
    if (path === '') continue;
    const base = posix.basename(path);
    if (base.startsWith(WHITEOUT)) {
      out.push({ path: `/${posix.join(posix.dirname(path), base.slice(WHITEOUT.length))}`, kind: 'D' });
      continue;
    }
    const existed = lower !== undefined && (await lstat(join(lower, path)).then(() => true, () => false));
    out.push({ path: `/${path}`, kind: existed ? 'C' : 'A' });
  }
  return out;
}
