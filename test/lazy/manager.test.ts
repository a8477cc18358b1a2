/**
 * The layer manager over local blobs: one resolution per blob however many callers ask at once,
 * use counts and forgetting after the grace period, prefetch up to the landmark, background fetch
 * to a complete verified copy, and background work yielding to foreground reads.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { bufferRangeReader, TOC_DIGEST_ANNOTATION, type ConvertResult } from '@buildcache/estargz';
import { pino } from 'pino';
import { ErrDigestMismatch } from '@buildcache/errdefs';
import { LayerManager, Priority, SparseBlob } from '@buildcache/lazy';
import type { Descriptor } from '@buildcache/snapshot';
import { convertFile, noise, sourceTree } from '../estargz/fixtures.js';
import { CountingReader } from './fixtures.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

function descOf(blob: Buffer, r?: ConvertResult): Descriptor {
  return {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: sha(blob),
    size: blob.length,
    ...(r ? { annotations: { [TOC_DIGEST_ANNOTATION]: r.tocDigest } } : {}),
  };
}

let dir: string;
let plain: { blob: Buffer; result: ConvertResult };
let prio: { blob: Buffer; result: ConvertResult };
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lazy-manager-'));
  const { tarGz } = await sourceTree(dir);
  plain = await convertFile(tarGz, { chunkSize: 32 * 1024 });
  prio = await convertFile(tarGz, { chunkSize: 32 * 1024, prioritizedFiles: ['bin/big.bin'] });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('layer manager', () => {
  test('concurrent callers share one resolution; the layer is forgotten a grace period after its last use', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm1'), graceMs: 50, background: false });
    const remote = new CountingReader(bufferRangeReader(plain.blob));
    let opened = 0;
    const open = (): CountingReader => {
      opened++;
      return remote;
    };
    const desc = descOf(plain.blob, plain.result);
    const layers = await Promise.all(Array.from({ length: 8 }, () => manager.use('test/img:v1', desc, open)));
    assert.equal(opened, 1);
    assert.equal(remote.requests, 1, 'footer and TOC in one range request');
    assert.ok(layers.every((l) => l === layers[0]));
    const layer = layers[0]!;
    assert.equal(layer.state().uses, 8);
    assert.equal(layer.state().resolved, true);
    for (const l of layers.slice(1)) manager.release(l);
    await sleep(120);
    assert.ok(manager.has(desc.digest), 'still used once');
    manager.release(layer);
    assert.ok(manager.has(desc.digest), 'kept during the grace period');
    const again = await manager.use('test/img:v1', desc, open);
    assert.equal(opened, 1, 'reused within the grace period');
    manager.release(again);
    for (let i = 0; i < 100 && manager.has(desc.digest); i++) await sleep(20);
    assert.ok(!manager.has(desc.digest), 'forgotten after the grace period');
    assert.ok(!(await exists(layer.blob.path)), 'its local copy is deleted');
    await manager.use('test/img:v1', desc, open).then((l) => manager.release(l));
    assert.equal(opened, 2, 'resolved anew after being forgotten');
    await manager.close();
  });

  test('close waits for the deletion a grace timer started: the local copy is gone and nothing runs after close resolves', async () => {
    const logged: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push((JSON.parse(line) as { msg: string }).msg) });
    const manager = new LayerManager({ dir: join(dir, 'm-close'), graceMs: 0, background: false, logger });
    const desc = descOf(plain.blob, plain.result);
    const layer = await manager.use('r', desc, () => bufferRangeReader(plain.blob));
    await layer.readFile('etc/hello.txt');
    // The grace timer's forget aborts the layer's work, then starts deleting its copy in the same tick.
    const forgetting = new Promise((res) => layer.stop.signal.addEventListener('abort', res, { once: true }));
    manager.release(layer);
    const alive = setInterval(() => undefined, 1000); // the grace timer is unref'd: keep the process up until it fires
    await forgetting.finally(() => clearInterval(alive));
    assert.ok(existsSync(layer.blob.path), 'the deletion is under way, not over');
    await manager.close();
    // checked synchronously: no I/O callback can have run since close resolved
    assert.equal(existsSync(layer.blob.path), false, 'the local copy is gone when close resolves');
    assert.equal(manager.has(desc.digest), false, 'the manager holds nothing');
    const seen = logged.length;
    assert.ok(logged.includes('layer forgotten'));
    await sleep(50);
    assert.equal(logged.length, seen, `nothing logged after close: ${logged.slice(seen).join(', ')}`);
  });

  test('a file read fetches only its chunk; stat and readdir fetch nothing', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm2'), background: false });
    const remote = new CountingReader(bufferRangeReader(plain.blob));
    const layer = await manager.use('r', descOf(plain.blob, plain.result), () => remote);
    const after = remote.bytes;
    assert.deepEqual(await layer.readdir('etc'), ['empty', 'hello.txt', 'link']);
    assert.equal((await layer.stat('bin/big.bin')).size, 300_000);
    assert.equal(remote.bytes, after);
    assert.equal((await layer.readFile('etc/hello.txt')).toString(), 'hello world\n');
    assert.ok(remote.bytes - after < 1024, `read ${remote.bytes - after} bytes`);
    assert.equal(layer.state().complete, false);
    manager.release(layer);
    await manager.close();
  });

  test('prefetch fetches up to the landmark; background fetch completes and verifies the blob without refetching', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm3'), background: false, pieceSize: 64 * 1024 });
    const remote = new CountingReader(bufferRangeReader(prio.blob));
    const layer = await manager.use('r', descOf(prio.blob, prio.result), () => remote);
    const landmark = layer.reader!.prefetchEnd!;
    assert.ok(landmark > 300_000 * 0.9 && landmark < prio.blob.length);
    await layer.prefetch();
    assert.equal(layer.state().prefetched, true);
    assert.ok(layer.blob.bytesPresent >= landmark);
    const before = remote.bytes;
    assert.ok((await layer.readFile('bin/big.bin')).equals(noise(300_000, 7)));
    assert.equal(remote.bytes, before, 'prefetched data is served locally');
    await manager.startBackground(layer);
    const st = layer.state();
    assert.equal(st.complete, true);
    assert.equal(st.bytesFetched, prio.blob.length, 'every byte fetched exactly once');
    manager.release(layer);
    await manager.close();
  });

  test('a blob whose bytes do not match its digest fails verification when complete', async () => {
    const manager = new LayerManager({ dir: join(dir, 'm4'), background: false });
    const desc = { ...descOf(plain.blob, plain.result), digest: sha(Buffer.from('not this')) };
    const layer = await manager.use('r', desc, () => bufferRangeReader(plain.blob));
    await assert.rejects(manager.startBackground(layer), ErrDigestMismatch);
    manager.release(layer);
    await manager.close();
  });

  test('a whole-blob stream (verified as it flows) replaces earlier range bytes and counts as verified, unless a range fetch lands meanwhile', async () => {
    const data = noise(256 * 1024, 11);
    const digest = sha(data);
    const wrong = Buffer.alloc(data.length, 0x78);
    let during: (() => Promise<unknown>) | undefined = undefined;
    const remote = {
      size: data.length,
      // range reads serve other bytes than the (verified) stream: only the stream's may end up in the copy
      readAt: (offset: number, length: number) => Promise.resolve(wrong.subarray(offset, offset + length)),
      async *stream() {
        yield data.subarray(0, 4096);
        await during?.();
        yield data.subarray(4096);
      },
    };
    const a = await SparseBlob.create(digest, remote, join(dir, 'stream-a.partial'), new Priority());
    await a.readAt(0, 1000);
    assert.equal(await a.fillByStream(), true);
    assert.equal(a.isVerified, true);
    assert.ok((await a.readAt(0, 1000)).equals(data.subarray(0, 1000)), 'the stream wrote over the range bytes');
    await a.verify();
    await a.dispose();

    const b = await SparseBlob.create(digest, remote, join(dir, 'stream-b.partial'), new Priority());
    during = () => b.readAt(data.length - 10, 10);
    assert.equal(await b.fillByStream(), true);
    assert.equal(b.isVerified, false, 'a range fetch wrote during the stream');
    await b.verify(); // hashed from disk: the stream later wrote over the tail the range fetch had filled
    await b.dispose();
  });

  test('background fetching waits while a foreground read is in flight', async () => {
    const remote = new CountingReader(bufferRangeReader(noise(1 << 20, 3)));
    const priority = new Priority();
    const blob = await SparseBlob.create('sha256:x', remote, join(dir, 'prio.partial'), priority);
    remote.close();
    const fg = blob.readAt(0, 4096);
    const bg = blob.ensure(512 * 1024, 1 << 20, { background: true });
    await sleep(50);
    assert.deepEqual(remote.log, [{ offset: 0, length: 4096 }], 'the background fetch has not started');
    remote.open();
    await fg;
    await bg;
    assert.deepEqual(remote.log[1], { offset: 512 * 1024, length: 512 * 1024 });
    // overlapping concurrent reads fetch each byte once (the second waits for the first, then fetches only its tail)
    const [a, b] = await Promise.all([blob.readAt(100_000, 1000), blob.readAt(100_500, 1000)]);
    assert.equal(a.length + b.length, 2000);
    assert.equal(remote.log.length, 4);
    await blob.dispose();
  });
});
