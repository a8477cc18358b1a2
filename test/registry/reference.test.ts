/** Reference parsing (Docker's rules, docker.io defaults), platform choice and Docker config credentials: no registry needed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import {
  apiHost, dockerConfigCredentials, formatReference, isLoopback, normalizePlatform, parseReference, selectPlatform,
  MediaType, type ImageIndex,
} from '@buildcache/registry';

const D = `sha256:${'a'.repeat(64)}`;

test('references: registry, repository, tag and digest, with Docker Hub defaults', () => {
  assert.deepEqual(parseReference('ubuntu'), { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' });
  assert.deepEqual(parseReference('ubuntu:22.04'), { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' });
  assert.deepEqual(parseReference('moby/buildkit:v0.12'), { registry: 'docker.io', repository: 'moby/buildkit', tag: 'v0.12' });
  assert.deepEqual(parseReference('index.docker.io/library/alpine'), { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' });
  assert.deepEqual(parseReference('127.0.0.1:5000/a/b:t'), { registry: '127.0.0.1:5000', repository: 'a/b', tag: 't' });
  assert.deepEqual(parseReference(`localhost/app@${D}`), { registry: 'localhost', repository: 'app', digest: D });
  assert.deepEqual(parseReference(`ghcr.io/o/r:v1@${D}`), { registry: 'ghcr.io', repository: 'o/r', tag: 'v1', digest: D });
  assert.deepEqual(parseReference('[::1]:5000/x'), { registry: '[::1]:5000', repository: 'x', tag: 'latest' });
  assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('ghcr.io'), 'ghcr.io');
  for (const [host, loop] of [['127.0.0.1:5000', true], ['localhost', true], ['[::1]:80', true], ['ghcr.io', false], ['127.example.com', false]] as const) {
    assert.equal(isLoopback(host), loop, host);
  }
});

test('bad references are ErrInvalidArgument naming the text', () => {
  for (const bad of ['', 'UPPER/case', 'a//b', 'repo:bad tag', `repo@sha256:${'z'.repeat(64)}`, 'repo@sha256:abc', 'host:5000/', ':tag']) {
    assert.throws(() => parseReference(bad), (err: unknown) => err instanceof ErrInvalidArgument && err.message.includes(JSON.stringify(bad)), bad);
  }
});

test('platforms: architecture names normalised, variants matched, attestations skipped', () => {
  assert.deepEqual(normalizePlatform({ os: 'Linux', architecture: 'x86_64' }), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'aarch64' }), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const entry = (n: number, architecture: string, variant?: string) => ({
    mediaType: MediaType.OCI_MANIFEST,
    digest: `sha256:${String(n).repeat(64)}`,
    size: 1,
    platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
  });
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: [
      { ...entry(0, 'amd64'), platform: { os: 'unknown', architecture: 'unknown' } },
      entry(1, 'arm', 'v6'),
      entry(2, 'arm', 'v7'),
      entry(3, 'arm64'),
      entry(4, 'amd64'),
    ],
  };
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' }), index.manifests[2]);
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'armhf' }), index.manifests[2]);
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'arm64' }), index.manifests[3]);
  assert.equal(selectPlatform(index, { os: 'linux', architecture: 'x86_64' }), index.manifests[4]);
  assert.equal(selectPlatform(index, { os: 'windows', architecture: 'amd64' }), undefined);
});

test('Docker config: auths by host (auth or username/password), Docker Hub key, registry tokens, missing file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-dockercfg-'));
  try {
    const provider = dockerConfigCredentials(dir);
    assert.equal(await provider('127.0.0.1:5000'), undefined, 'no config.json: anonymous');
    await writeFile(join(dir, 'config.json'), JSON.stringify({
      auths: {
        '127.0.0.1:5000': { auth: Buffer.from('bob:pa:ss\0').toString('base64') },
        'https://index.docker.io/v1/': { username: 'hubuser', password: 'hubpass' },
        'http://tok.example/v2/': { registrytoken: 'abc' },
      },
    }));
    assert.deepEqual(await provider('127.0.0.1:5000'), { username: 'bob', password: 'pa:ss' });
    assert.deepEqual(await provider('docker.io'), { username: 'hubuser', password: 'hubpass' });
    assert.deepEqual(await provider('tok.example'), { registryToken: 'abc' });
    assert.equal(await provider('other.example'), undefined);
    await writeFile(join(dir, 'config.json'), '{not json');
    await assert.rejects(provider('127.0.0.1:5000'), ErrInvalidArgument);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
