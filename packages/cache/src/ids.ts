/** Record IDs, digest validation and OCI identity (diffID → chainID, blobChainID). */
import { createHash, randomBytes } from 'node:crypto';
import { ErrInvalidArgument } from '@buildcache/errdefs';

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A new random record ID: 26 base32 characters (130 bits). */
export function newRecordId(): string {
  const bytes = randomBytes(17);
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

/** Throws ErrInvalidArgument unless `digest` is a `sha256:<64 hex>` string. */
export function checkDigest(digest: unknown, what: string): string {
  if (typeof digest !== 'string' || !DIGEST.test(digest)) {
    throw new ErrInvalidArgument(`${what} is not a sha256 digest: ${JSON.stringify(digest)} (expected sha256:<64 hex>)`, {
      details: { digest: String(digest) },
    });
  }
  return digest;
}

/** sha256 of a string, as a digest. */
export function digestOf(text: string): string {
  return 'sha256:' + createHash('sha256').update(text).digest('hex');
}

/** ChainID of `parentChainID` extended by one layer `diffID` (the parent's absent for a base layer). */
export function chainID(parentChainID: string | undefined, diffID: string): string {
  return parentChainID === undefined ? diffID : digestOf(`${parentChainID} ${diffID}`);
}

/** ChainIDs of a list of diffIDs, base first, by the OCI identity rule. */
export function chainIDs(diffIDs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIDs) out.push(chainID(out[out.length - 1], d));
  return out;
}

/** BlobChainID of a layer: the chain over (blob, diffID) pairs, so equal content with other blobs differs. */
export function blobChainID(parentBlobChainID: string | undefined, blob: string, diffID: string): string {
  return chainID(parentBlobChainID, digestOf(`${blob} ${diffID}`));
}
