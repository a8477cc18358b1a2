/** Bounded gunzip of gzip members held in memory: never inflates more than asked for. */
import { createGunzip } from 'node:zlib';

/**
 * The first `want` decompressed bytes of `compressed` (one or more gzip members), inflating no
 * further; fewer when the data ends first. `onError` maps a zlib failure to a typed error.
 */
export async function gunzipPrefix(compressed: Buffer, want: number, onError: (err: unknown) => Error): Promise<Buffer> {
  const gz = createGunzip({ chunkSize: Math.min(Math.max(want, 16 * 1024), 1 << 20) });
  const parts: Buffer[] = [];
  let got = 0;
  gz.end(compressed);
  try {
    for await (const chunk of gz as AsyncIterable<Buffer>) {
      parts.push(chunk);
      got += chunk.length;
      if (got >= want) break;
    }
  } catch (err) {
    throw onError(err);
  } finally {
    gz.destroy();
  }
  const all = Buffer.concat(parts, got);
  return all.length > want ? all.subarray(0, want) : all;
}
