/**
 * PoolSha256 against node:crypto: the same digest whatever the chunking (empty input, chunks
 * around the batch size, views into larger buffers), hashed in order; a used-up hash refuses more.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { PoolSha256 } from '../src/index.js';
import { native } from '../src/native.js';

const reference = (chunks: readonly Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

async function pooled(chunks: readonly Uint8Array[]): Promise<string> {
  const h = new PoolSha256();
  for (const c of chunks) await h.update(c);
  return h.digest();
}

describe('PoolSha256', () => {
  it('digests nothing as sha256 of the empty string', async () => {
    assert.equal(await pooled([]), reference([]));
    assert.equal(await pooled([Buffer.alloc(0), new Uint8Array(0)]), reference([]));
  });

  it('gives node:crypto\'s digest for chunks small and large, in order, across several pool jobs', async () => {
    const data = randomBytes(9 << 20);
    const chunks: Buffer[] = [];
    // 1 byte, odd sizes, exactly 1 MiB, more than a batch in one chunk
    for (let off = 0, k = 0; off < data.length; k++) {
      const n = Math.min(data.length - off, [1, 511, 65536, 1 << 20, 3 << 20, 7][k % 6]!);
      chunks.push(data.subarray(off, off + n));
      off += n;
    }
    assert.equal(await pooled(chunks), reference([data]));
    // the same bytes in another order give another digest: updates are hashed in the order given
    assert.notEqual(await pooled([...chunks].reverse()), reference([data]));
  });

  it('hashes only the bytes of a view (offset and length), also of a Uint8Array that is not a Buffer', async () => {
    const big = randomBytes(4096);
    const view = new Uint8Array(big.buffer, big.byteOffset + 100, 1000);
    assert.equal(await pooled([view, big.subarray(7, 9)]), reference([big.subarray(100, 1100), big.subarray(7, 9)]));
  });

  it('refuses an update while one runs, or any use after the digest (EBUSY), and a chunk that is not bytes', async () => {
    const n = native();
    const state = n.sha256New();
    const running = n.sha256Update(state, [Buffer.alloc(1 << 20)]);
    assert.throws(() => n.sha256Update(state, [Buffer.alloc(1)]), { code: 'EBUSY' });
    assert.throws(() => n.sha256Digest(state), { code: 'EBUSY' });
    await running;
    assert.equal(n.sha256Digest(state), reference([Buffer.alloc(1 << 20)]));
    assert.throws(() => n.sha256Digest(state), { code: 'EBUSY' });
    assert.throws(() => n.sha256Update(state, []), { code: 'EBUSY' });
    assert.throws(() => n.sha256Update(n.sha256New(), ['text' as unknown as Uint8Array]), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});
