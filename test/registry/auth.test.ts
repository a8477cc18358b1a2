/**
 * Authentication against docker-registry 2.8: Bearer tokens from a real token server (RS256 JWTs
 * the registry verifies against its rootcertbundle), cached per scope; htpasswd basic auth;
 * credentials from Docker's config.json (DOCKER_CONFIG); refusals as ErrUnauthorized.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrUnauthorized } from '@buildcache/errdefs';
import { RegistryClient, dockerConfigCredentials, parseChallenge } from '@buildcache/registry';
import { startFaultProxy, startRegistry, type TestRegistry } from '../support/registry.js';
import { collect, configBlob, manifestBytes, randomBlob } from './helpers.js';

async function dockerConfig(dir: string, host: string, user: string, password: string): Promise<void> {
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } }));
}

test('WWW-Authenticate challenges parse (quoted commas, Basic)', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' },
  });
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
});

describe('token auth (Bearer)', () => {
  let reg: TestRegistry;
  let dir: string;
  before(async () => {
    reg = await startRegistry({ auth: 'token' });
    dir = await mkdtemp(join(tmpdir(), 'bc-dockercfg-'));
  });
  after(async () => {
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('credentials from DOCKER_CONFIG get push and pull tokens, cached per scope', async () => {
    await dockerConfig(dir, reg.host, 'alice', 'wonderland');
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = dir;
    const client = new RegistryClient({ retryDelayMs: 10 });
    try {
      const repo = `${reg.host}/secure/app`;
      const layer = randomBlob(50_000);
      const config = configBlob();
      await client.pushBlob(repo, layer.descriptor, layer.bytes, { chunkSize: 16 * 1024 });
      await client.pushBlob(repo, config.descriptor, config.bytes);
      const m = manifestBytes(config.descriptor, [layer.descriptor]);
      await client.pushManifest(`${repo}:v1`, m.bytes, m.mediaType);
      const pushTokens = client.tokenFetches;
      assert.equal(pushTokens, 2, 'one token for pull (the HEAD before the push), one for pull+push, reused by every later request');

      const img = await client.resolve(`${repo}:v1`);
      assert.ok((await collect(client.fetchBlob(repo, layer.descriptor))).equals(layer.bytes));
      assert.ok((await client.readAt(repo, layer.descriptor, 10, 10)).equals(layer.bytes.subarray(10, 20)));
      assert.equal(img.descriptor.digest, m.digest);
      assert.equal(client.tokenFetches, pushTokens, 'pulls reuse the cached pull token');

      const mounted = await client.pushBlob(`${reg.host}/secure/other`, layer.descriptor, layer.bytes, { mountFrom: 'secure/app' });
      assert.equal(mounted.status, 'mounted', 'mount with a token holding pull on the source and push on the target');
      assert.ok(reg.tokens?.requests.some((r) => r.scopes.includes('repository:secure/app:pull') && r.scopes.includes('repository:secure/other:pull,push')));

      const tokenUsers = new Set(reg.tokens?.requests.map((r) => r.user));
      assert.deepEqual([...tokenUsers], ['alice'], 'the token server saw alice’s credentials from config.json');
    } finally {
      await client.close();
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
  });

  test('anonymous, wrong password, or no push right: ErrUnauthorized naming the reference', async () => {
    const repo = `${reg.host}/secure/app`;
    const blob = randomBlob(100);
    const anonymous = new RegistryClient({ credentials: async () => undefined, retryDelayMs: 10 });
    const wrong = new RegistryClient({ credentials: async () => ({ username: 'alice', password: 'nope' }), retryDelayMs: 10 });
    const alice = new RegistryClient({ credentials: dockerConfigCredentials(dir), retryDelayMs: 10 });
    try {
      await assert.rejects(anonymous.getManifest(`${repo}:v1`), (err: unknown) => {
        assert.ok(err instanceof ErrUnauthorized, String(err));
        assert.match(err.message, /secure\/app:v1/);
        return true;
      });
      await assert.rejects(wrong.headBlob(repo, blob.descriptor.digest), ErrUnauthorized);
      reg.tokens?.readOnly.add('secure/readonly');
      await assert.rejects(alice.pushBlob(`${reg.host}/secure/readonly`, blob.descriptor, blob.bytes), (err: unknown) => {
        assert.ok(err instanceof ErrUnauthorized, String(err));
        assert.match(err.message, /secure\/readonly@sha256:/);
        return true;
      });
    } finally {
      await Promise.all([anonymous.close(), wrong.close(), alice.close()]);
    }
  });
});

describe('basic auth (htpasswd, bcrypt)', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
  });
  after(async () => {
    await reg?.stop();
  });

  test('push and pull with user and password; none or wrong → ErrUnauthorized', async () => {
    const repo = `${reg.host}/basic/app`;
    const blob = randomBlob(20_000);
    const alice = new RegistryClient({ credentials: async () => ({ username: 'alice', password: 'wonderland' }), retryDelayMs: 10 });
    const anonymous = new RegistryClient({ credentials: async () => undefined, retryDelayMs: 10 });
    const wrong = new RegistryClient({ credentials: async () => ({ username: 'alice', password: 'x' }), retryDelayMs: 10 });
    try {
      assert.equal((await alice.pushBlob(repo, blob.descriptor, blob.bytes)).status, 'uploaded');
      assert.ok((await alice.readBlob(repo, blob.descriptor)).equals(blob.bytes));
      assert.equal(alice.tokenFetches, 0);

      // a redirect to another origin (blob storage) never carries the registry's Authorization
      const front = await startFaultProxy(reg.url);
      const storage = await startFaultProxy(reg.url);
      try {
        const viaFront = `${front.host}/basic/app`;
        assert.ok((await alice.readBlob(viaFront, blob.descriptor)).equals(blob.bytes));
        assert.ok(front.log.at(-1)?.authorized, 'the registry itself gets credentials');
        front.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'redirect', origin: storage.url } });
        await assert.rejects(alice.readBlob(viaFront, blob.descriptor), ErrUnauthorized); // this storage wants auth: refused, not leaked
        assert.deepEqual(storage.log.map((e) => e.authorized), [false]);
      } finally {
        await front.stop();
        await storage.stop();
      }
      await assert.rejects(anonymous.headBlob(repo, blob.descriptor.digest), ErrUnauthorized);
      await assert.rejects(wrong.readBlob(repo, blob.descriptor), ErrUnauthorized);
    } finally {
      await Promise.all([alice.close(), anonymous.close(), wrong.close()]);
    }
  });
});
