/**
 * What an apply costs and how it fails: peak memory does not depend on the layer (measured in a
 * child process), every filesystem failure is a typed error naming the entry with no host path in
 * its message, and layers apply as a normal user (devices skipped, as containerd does).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, lstat, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { ErrPermissionDenied, ErrResourceExhausted, ErrUnsafeEntry } from '@buildcache/errdefs';
import type { BuildcacheError } from '@buildcache/errdefs';
import { applyLayer } from '../../src/embedded/archive/index.js';
import { BLOCK, padding, writeBytes, writeChecksum, writeNumeric } from '../../src/embedded/archive/tar-format.js';
import { E, buildTar, cleanup, recordingLogger, run, tempDir } from './helpers.js';

after(cleanup);

const execFileP = promisify(execFile);
const worker = join(dirname(fileURLToPath(import.meta.url)), 'apply-worker.js');
const NOBODY = 65534;

/** What the worker prints. */
interface WorkerResult {
  ok: boolean;
  name?: string;
  code?: string;
  message?: string;
  details?: Record<string, unknown>;
  entries?: number;
  peakKiB: number;
}

/**
 * Applies the layer file `blob` onto `target` in a child process (as `uid`, when given; with its
 * file-size limit RLIMIT_FSIZE at `fsize` bytes, when given).
 */
async function applyInChild(blob: string, target: string, compression: string, uid?: number, fsize?: number): Promise<WorkerResult> {
  const ids = uid === undefined ? {} : { uid, gid: uid };
  const [cmd, args] = fsize === undefined ? [process.execPath, []] : ['prlimit', [`--fsize=${fsize}`, '--', process.execPath]];
  const { stdout } = await execFileP(cmd, [...args, worker, blob, target, compression], { ...ids, maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as WorkerResult;
}

/** A raw ustar header block (for meta entries our writer would never chain). */
function rawHeader(name: string, flag: string, size: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  writeBytes(b, 'name', Buffer.from(name));
  writeNumeric(b, 'mode', 0o644);
  writeNumeric(b, 'uid', 0);
  writeNumeric(b, 'gid', 0);
  writeNumeric(b, 'size', size);
  writeNumeric(b, 'mtime', 1_700_000_000);
  b[156] = flag.charCodeAt(0);
  writeBytes(b, 'magic', Buffer.from('ustar\0'));
  writeBytes(b, 'version', Buffer.from('00'));
  writeChecksum(b);
  return b;
}

/**
 * A gzip layer of `n` PAX headers of `dataSize` bytes each (a distinct ~1 MB xattr in each) before
 * one file: concatenated gzip members, the big value compressed once, so the blob stays ~1 KB a header.
 */
function paxChainLayer(n: number, dataSize: number): Buffer {
  const prefixOf = (i: number): string => `${dataSize} SCHILY.xattr.user.k${String(i).padStart(5, '0')}=`;
  const valueSize = dataSize - prefixOf(0).length - 1;
  const value = gzipSync(Buffer.alloc(valueSize, 0x61));
  const tail = gzipSync(Buffer.concat([Buffer.from('\n'), Buffer.alloc(padding(dataSize))]));
  const members: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    members.push(gzipSync(Buffer.concat([rawHeader('PaxHeaders/victim', 'x', dataSize), Buffer.from(prefixOf(i))])), value, tail);
  }
  members.push(gzipSync(Buffer.concat([rawHeader('victim', '0', 0), Buffer.alloc(2 * BLOCK)])));
  return Buffer.concat(members);
}

describe('bounded memory', () => {
  it('a chain of 1,024 PAX headers of ~1 MB before one entry is ErrCorruptLayer, and peak memory stays low', async () => {
    const dir = await tempDir('bc-mem-');
    const blob = join(dir, 'layer.tar.gz');
    const layer = paxChainLayer(1024, 1_000_000);
    await writeFile(blob, layer);
    await mkdir(join(dir, 'target'));
    const r = await applyInChild(blob, join(dir, 'target'), 'gzip');
    const peakMiB = Math.round(r.peakKiB / 1024);
    console.log(`# pax chain: ${(layer.length / 1e6).toFixed(2)} MB blob → ${r.ok ? 'applied' : r.code} ; peak RSS ${peakMiB} MiB`);
    assert.equal(r.code, 'ERR_CORRUPT_LAYER', r.message);
    assert.match(String(r.details?.['entry']), /victim/, r.message);
    assert.ok(peakMiB < 256, `peak RSS ${peakMiB} MiB`);
  });

  it('many 1 MiB files: small-file bodies waiting to be written are bounded', async () => {
    const dir = await tempDir('bc-mem-');
    const blob = join(dir, 'layer.tar.gz');
    const body = Buffer.alloc(1 << 20, 0x62);
    const entries = Array.from({ length: 160 }, (_, i) => ({ ...E, name: `f${i}`, type: 'file' as const, body }));
    await writeFile(blob, gzipSync(await buildTar(entries)));
    await mkdir(join(dir, 'target'));
    const r = await applyInChild(blob, join(dir, 'target'), 'gzip');
    const peakMiB = Math.round(r.peakKiB / 1024);
    console.log(`# 160 × 1 MiB files: ${r.ok ? 'applied' : r.code} ; peak RSS ${peakMiB} MiB`);
    assert.ok(r.ok, r.message);
    assert.ok(peakMiB < 160, `peak RSS ${peakMiB} MiB`);
  });
});

/** Asserts that applying `layer` onto `target` fails with `cls`, naming `entry`, without `hostPath` in its message. */
async function expectFailure(
  layer: Buffer,
  target: string,
  cls: abstract new (...args: never[]) => BuildcacheError,
  entry: string,
  errno: string,
): Promise<void> {
  const { logger, records } = recordingLogger();
  await assert.rejects(applyLayer([layer], target, { logger }), (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal(err.details.entry, entry, err.message);
    assert.equal(err.details['errno'], errno, err.message);
    assert.ok(err.message.includes(JSON.stringify(entry)), err.message);
    assert.ok(!err.message.includes(target) && !err.message.includes('/tmp'), `host path in: ${err.message}`);
    return true;
  });
  const logged = records.find((r) => r['entry'] === entry && typeof r['path'] === 'string');
  assert.ok(String(logged?.['path']).startsWith(target), `the host path is in the debug log: ${JSON.stringify(records)}`);
}

describe('filesystem failures are typed errors naming the entry', () => {
  it('ENAMETOOLONG: a name component over 255 bytes', async () => {
    const target = await tempDir('bc-fail-');
    const name = `d/${'n'.repeat(300)}`;
    await expectFailure(await buildTar([{ ...E, name, type: 'file', body: 'x' }]), target, ErrUnsafeEntry, name, 'ENAMETOOLONG');
  });

  it('ENOSPC: a full filesystem, for small (buffered) and large (streamed) files', async () => {
    const base = await tempDir('bc-fail-');
    for (const [name, size] of [['small', 900_000], ['large', 3 << 20]] as const) {
      const target = join(base, name);
      await mkdir(target);
      await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', target]);
      try {
        // one file only: the entry that meets the full disk is the one the error must name
        const layer = await buildTar([{ ...E, name: `big-${name}`, type: 'file', body: Buffer.alloc(size, 1) }]);
        await expectFailure(layer, target, ErrResourceExhausted, `big-${name}`, 'ENOSPC');
      } finally {
        await run('umount', [target]);
      }
    }
  });

  it('EFBIG: a file over the file-size limit, small (queued), large (streamed) and sparse, is ErrResourceExhausted', async () => {
    const dir = await tempDir('bc-fail-');
    await mkdir(join(dir, 'src'));
    await run('truncate', ['-s', String(1 << 30), join(dir, 'src', 'sparse')]); // all hole: only the size is over the limit
    for (const [name, size] of [['small', 900_000], ['large', 3 << 20]] as const) await writeFile(join(dir, 'src', name), Buffer.alloc(size, 1));
    for (const name of ['small', 'large', 'sparse']) {
      const blob = join(dir, `${name}.tar`);
      await run('tar', ['-C', join(dir, 'src'), '--format=posix', '--sparse', '-cf', blob, name]);
      const target = join(dir, `target-${name}`);
      await mkdir(target);
      const r = await applyInChild(blob, target, 'auto', undefined, 256 << 10);
      assert.equal(r.code, 'ERR_RESOURCE_EXHAUSTED', `${name}: ${r.message}`);
      assert.equal(r.details?.['entry'], name, r.message);
      assert.equal(r.details?.['errno'], 'EFBIG', r.message);
    }
  });

  it('EPERM: a directory of the target is immutable', async () => {
    const target = await tempDir('bc-fail-');
    await mkdir(join(target, 'locked'));
    await run('chattr', ['+i', join(target, 'locked')]);
    try {
      await expectFailure(await buildTar([{ ...E, name: 'locked/f', type: 'file', body: 'x' }]), target, ErrPermissionDenied, 'locked/f', 'EPERM');
    } finally {
      await run('chattr', ['-i', join(target, 'locked')]);
    }
  });
});

describe('as a normal user', () => {
  it('applies a layer with devices: device nodes are skipped (as containerd does), fifos and files made', async () => {
    const dir = await tempDir('bc-user-');
    await chmod(dir, 0o755);
    const target = join(dir, 'target');
    await mkdir(target);
    await chown(target, NOBODY, NOBODY);
    const blob = join(dir, 'layer.tar');
    await writeFile(blob, await buildTar([
      { ...E, name: 'dev', type: 'dir', mode: 0o755 },
      { ...E, name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { ...E, name: 'dev/loop0', type: 'block', devmajor: 7, devminor: 0, mode: 0o660 },
      { ...E, name: 'dev/initctl', type: 'fifo', mode: 0o600 },
      { ...E, name: 'etc/hostname', type: 'file', body: 'box\n' },
    ]));
    await chmod(blob, 0o644);
    const r = await applyInChild(blob, target, 'uncompressed', NOBODY);
    assert.ok(r.ok, `${r.code}: ${r.message}`);
    assert.equal(r.entries, 5);
    await assert.rejects(lstat(join(target, 'dev/null')), { code: 'ENOENT' });
    await assert.rejects(lstat(join(target, 'dev/loop0')), { code: 'ENOENT' });
    assert.ok((await lstat(join(target, 'dev/initctl'))).isFIFO());
    assert.equal((await lstat(join(target, 'etc/hostname'))).uid, NOBODY);
  });
});
