import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, readFile, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrPermissionDenied } from '@buildcache/errdefs';
import { LocalMounter, readonlyMount, unmount } from '../src/mount.js';
import { parseMountOptions } from '../src/mount-syscall.js';

test('mount options split into flags and data as mount(8) does', () => {
  assert.deepEqual(parseMountOptions(['ro', 'rbind']), { flags: 1 | 4096 | 16384, data: '' });
  assert.deepEqual(parseMountOptions(['rw', 'nosuid', 'nodev', 'index=off', 'lowerdir=/a:/b']), { flags: 2 | 4, data: 'index=off,lowerdir=/a:/b' });
  assert.equal(parseMountOptions(['ro', 'rw']).flags, 0, 'a later rw clears ro');
});

test('bind mounts: rw writes through, ro refuses writes; unmount of a non-mount is a no-op', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-mount-'));
  try {
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'x');
    const mounter = new LocalMounter(dir);
    const rw = await mounter.mount([{ type: 'bind', source: src, options: ['rbind', 'rw'] }]);
    assert.equal(rw.target, src, 'a writable bind is its source, with no mount');
    await rw.unmount();
    const ro = await mounter.mount([{ type: 'bind', source: src, options: ['ro', 'rbind'] }]);
    assert.notEqual(ro.target, src);
    assert.equal(await readFile(join(ro.target, 'f'), 'utf8'), 'x');
    await assert.rejects(writeFile(join(ro.target, 'g'), 'y'), { code: 'EROFS' });
    await ro.unmount();
    await unmount(src);
    assert.deepEqual((await readdir(dir)).sort(), ['src'], 'temp mount points are removed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('without the right to mount: a read-only bind is its directory, an overlay fails up front with ErrPermissionDenied', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-mount-'));
  try {
    const src = join(dir, 'src');
    await mkdir(src);
    const mounter = new LocalMounter(dir, false);
    const ro = await mounter.mount([{ type: 'bind', source: src, options: ['ro', 'rbind'] }]);
    assert.equal(ro.target, src, 'the directory itself (read-only by contract)');
    await ro.unmount();
    const overlay = { type: 'overlay', source: 'overlay', options: [`lowerdir=${src}:${src}`] };
    await assert.rejects(mounter.mount([overlay]), (err: Error) => err instanceof ErrPermissionDenied && /needs root/.test(err.message));
    assert.deepEqual(await readdir(dir), ['src'], 'no mount point was made');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an overlay whose options exceed a page is mounted with shortened paths', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-mount-'));
  try {
    const layers = join(dir, 'layers-with-a-deliberately-long-directory-name-to-make-the-options-long');
    const lowers: string[] = [];
    for (let i = 0; i < 40; i++) {
      const d = join(layers, `layer-${String(i).padStart(3, '0')}-${'x'.repeat(60)}`, 'fs');
      await mkdir(d, { recursive: true });
      await writeFile(join(d, `file-${i}`), String(i));
      lowers.unshift(d);
    }
    const upper = join(layers, 'upper', 'fs');
    const work = join(layers, 'upper', 'work');
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    const mount = { type: 'overlay', source: 'overlay', options: [`workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lowers.join(':')}`] };
    assert.ok(mount.options.join(',').length > 4096, 'the options are longer than a page');
    const mounter = new LocalMounter(dir);
    const m = await mounter.mount([mount]);
    try {
      assert.equal(await readFile(join(m.target, 'file-0'), 'utf8'), '0');
      assert.equal(await readFile(join(m.target, 'file-39'), 'utf8'), '39');
      await writeFile(join(m.target, 'new'), 'n');
    } finally {
      await m.unmount();
    }
    assert.equal(await readFile(join(upper, 'new'), 'utf8'), 'n', 'writes land in the upperdir');
    const ro = await mounter.mount([readonlyMount(mount)]);
    try {
      assert.equal(await readFile(join(ro.target, 'new'), 'utf8'), 'n');
      await assert.rejects(writeFile(join(ro.target, 'other'), 'o'), { code: 'EROFS' });
    } finally {
      await ro.unmount();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
