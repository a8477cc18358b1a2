/** Uploads into the content store that always start from byte 0. */
import { ErrNotFound } from '@buildcache/errdefs';
import type { ContentStore, ContentWriter, LeasedOptions } from '@buildcache/snapshot';

/**
 * Opens ingest `ref` empty: the part an interrupted upload (a killed process, a dropped stream) left
 * under the same ref is aborted first, since our producers cannot resume mid-stream.
 */
export async function freshWriter(
  content: ContentStore,
  ref: string,
  options: LeasedOptions & { expected?: string; total?: number },
): Promise<ContentWriter> {
  const writer = await content.writer(ref, options);
  if (writer.exists || writer.offset === 0) return writer;
  if (options.expected !== undefined && writer.offset === options.total) {
    // containerd shares a blob that another namespace stored: its writer starts at the full size,
    // and committing takes the blob without writing (writing would append to it)
    await writer.commit({ size: options.total, expected: options.expected });
    return { offset: writer.offset, exists: true, write: () => Promise.resolve(), commit: () => Promise.resolve(options.expected!), close: () => Promise.resolve() };
  }
  await writer.close();
  await content.abort(ref).catch((err: unknown) => {
    if (!(err instanceof ErrNotFound)) throw err;
  });
  return content.writer(ref, options);
}
