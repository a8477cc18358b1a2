/**
 * Script-level check of the registry client (no CLI): push a blob, a config and a manifest (by tag
 * and by digest), resolve them back by tag and by digest, pull the blob and compare; prints JSON
 * figures (push/pull MiB/s, range-read latency). Exits non-zero on any mismatch.
 *
 *   node test/dist/registry/roundtrip.js [HOST:PORT] [--mib N]
 * Without HOST:PORT it starts a private docker-registry on loopback and stops it at the end.
 */
import assert from 'node:assert/strict';
import { RegistryClient } from '@buildcache/registry';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { collect, configBlob, manifestBytes, randomBlob } from './helpers.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const mibAt = args.indexOf('--mib');
  const mib = mibAt >= 0 ? Number(args[mibAt + 1]) : 32;
  const hostArg = args.find((a, i) => !a.startsWith('--') && i !== mibAt + 1);
  let reg: TestRegistry | undefined;
  const host = hostArg ?? (reg = await startRegistry()).host;
  const client = new RegistryClient();
  try {
    const repo = `${host}/roundtrip/check`;
    const layer = randomBlob(mib * 1024 * 1024);
    const config = configBlob();
    let t0 = performance.now();
    const pushed = await client.pushBlob(repo, layer.descriptor, layer.bytes);
    const pushSeconds = (performance.now() - t0) / 1000;
    await client.pushBlob(repo, config.descriptor, config.bytes);
    const m = manifestBytes(config.descriptor, [layer.descriptor]);
    await client.pushManifest(`${repo}:roundtrip`, m.bytes, m.mediaType);
    const m2 = manifestBytes(config.descriptor, [layer.descriptor], true);
    await client.pushManifest(`${repo}@${m2.digest}`, m2.bytes, m2.mediaType);

    t0 = performance.now();
    const byTag = await client.resolve(`${repo}:roundtrip`);
    const resolveMs = performance.now() - t0;
    const byDigest = await client.resolve(`${repo}@${m.digest}`);
    const dockerByDigest = await client.resolve(`${repo}@${m2.digest}`);
    assert.ok(byTag.bytes.equals(m.bytes) && byDigest.bytes.equals(m.bytes) && dockerByDigest.bytes.equals(m2.bytes), 'manifests round-trip');

    t0 = performance.now();
    const pulled = await collect(client.fetchBlob(repo, byTag.manifest.layers[0] ?? layer.descriptor));
    const pullSeconds = (performance.now() - t0) / 1000;
    assert.ok(pulled.equals(layer.bytes), 'the blob round-trips');
    assert.ok((await client.readBlob(repo, byDigest.manifest.config)).equals(config.bytes), 'the config round-trips');

    const remote = await client.openBlob(repo, layer.descriptor);
    const reads = 50;
    t0 = performance.now();
    for (let i = 0; i < reads; i++) {
      const off = Math.floor((i * remote.size) / reads);
      const got = await remote.readAt(off, Math.min(65536, remote.size - off));
      assert.ok(got.equals(layer.bytes.subarray(off, off + got.length)));
    }
    const rangeMs = (performance.now() - t0) / reads;
    console.log(JSON.stringify({
      registry: host,
      blobMiB: mib,
      push: pushed.status,
      pushMiBps: +(mib / pushSeconds).toFixed(1),
      pullMiBps: +(mib / pullSeconds).toFixed(1),
      resolveMs: +resolveMs.toFixed(2),
      rangeRead64KiBMs: +rangeMs.toFixed(2),
      manifest: { tag: `${repo}:roundtrip`, digest: m.digest, dockerDigest: m2.digest },
      ok: true,
    }));
  } finally {
    await client.close();
    await reg?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
