import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { chainID, chainIDs, blobChainID, checkDigest, digestOf, newRecordId } from '../src/ids.js';

// The worked example of shared/reference/formats.md §6 (checked there against Go's identity.ChainIDs).
const A = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';
const B = 'sha256:90f7daf01b12ce93e08c600f55c2fb1b8a8fe4cbab5a1e5d45d99429a51cfd5b';
const C = 'sha256:94b78670e728515bad352838e656a0b34b0eb780a116bdeae35c02f451505714';

test('chainIDs follow the OCI identity rule (worked example)', () => {
  assert.deepEqual(chainIDs([A, B, C]), [
    A,
    'sha256:eecc984033e3d2a92f2193b90529d7ea2e763b845d0c9e9eddc3977f0e5762f3',
    'sha256:ae482cb5744cef442d95c1453b58b8a275602983059924cd3e615ba49128dece',
  ]);
  assert.equal(chainID(undefined, A), A);
});

test('blobChainID covers the blob digest as well as the diffID', () => {
  const base = blobChainID(undefined, B, A);
  assert.equal(base, digestOf(`${B} ${A}`));
  assert.notEqual(blobChainID(undefined, C, A), base, 'another blob of the same content differs');
  assert.equal(blobChainID(base, C, B), digestOf(`${base} ${digestOf(`${C} ${B}`)}`));
});

test('digests are validated at the boundary', () => {
  assert.equal(checkDigest(A, 'x'), A);
  for (const bad of ['', 'sha256:abc', 'md5:' + 'a'.repeat(64), A.toUpperCase(), 42]) {
    assert.throws(() => checkDigest(bad, 'blob'), ErrInvalidArgument);
  }
});

test('record IDs are 26 base32 characters and do not repeat', () => {
  const ids = new Set(Array.from({ length: 10_000 }, newRecordId));
  assert.equal(ids.size, 10_000);
  for (const id of ids) assert.match(id, /^[a-z2-7]{26}$/);
});
