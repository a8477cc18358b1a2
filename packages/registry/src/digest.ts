/** Content digests (`algorithm:hex`): validation and hashing of bytes as they pass. */
import { createHash, type Hash } from 'node:crypto';
import { ErrInvalidArgument } from '@buildcache/errdefs';

const LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** Throws `ErrInvalidArgument` unless `digest` is `sha256|sha384|sha512:<lowercase hex of the right length>`. */
export function assertDigest(digest: string, reference?: string): void {
  const [alg, hex] = digest.split(':', 2);
  const len = alg === undefined ? undefined : LENGTHS[alg];
  if (len === undefined || hex === undefined || hex.length !== len || !/^[0-9a-f]+$/.test(hex)) {
    throw new ErrInvalidArgument(
      `invalid digest ${JSON.stringify(digest)}${reference ? ` for ${reference}` : ''}: want sha256:<64 lowercase hex> (or sha384/sha512)`,
      { details: { digest, ...(reference ? { reference } : {}) } },
    );
  }
}

/** A running hash for the algorithm of `digest`; `digest()` gives the result once all bytes passed. */
export class DigestVerifier {
  private readonly hash: Hash;
  private readonly alg: string;
  constructor(readonly expected: string) {
    this.alg = expected.split(':')[0] ?? 'sha256';
    this.hash = createHash(this.alg);
  }
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
  }
  /** The digest of everything passed so far (call once). */
  digest(): string {
    return `${this.alg}:${this.hash.digest('hex')}`;
  }
}

/** The digest of `bytes` with `algorithm` (default sha256). */
export function digestOf(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
