/** Byte streams on buildcache's API: cut into messages of at most 1 MiB (the daemon takes up to 4 MiB). */

const CHUNK = 1 << 20;

/** Cuts `source` into chunks of at most CHUNK bytes. */
export async function* chunked(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const c of source) {
    const b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    for (let at = 0; at < b.length; at += CHUNK) yield b.subarray(at, at + CHUNK);
  }
}

/** A client stream's messages: `first`, then each chunk of `source` as `{ [field]: chunk }`. */
export async function* messages(first: object, field: string, source: AsyncIterable<Uint8Array>): AsyncGenerator<object> {
  yield first;
  for await (const c of chunked(source)) yield { [field]: c };
}
