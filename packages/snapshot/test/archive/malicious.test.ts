/**
 * The malicious-layer corpus: every hostile layer gives its typed error naming the entry, and a
 * sentinel directory next to the target (and /tmp) is left byte-for-byte unchanged.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { ErrCorruptLayer, ErrUnsafeEntry } from '@buildcache/errdefs';
import { applyLayer } from '../../src/embedded/archive/index.js';
import type { BuildcacheError } from '@buildcache/errdefs';
import type { ApplyOptions, TarWriteEntry } from '../../src/embedded/archive/index.js';
import { listXattrs } from '../../src/embedded/archive/xattrs.js';
import { E, buildTar, cleanup, fingerprint, recordingLogger, tempDir } from './helpers.js';

after(cleanup);

const uniq = `bc-pwn-${randomBytes(6).toString('hex')}`;
type Entry = TarWriteEntry & { body?: string | Buffer };

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** base/{target,sentinel}; returns paths and the sentinel's fingerprint. */
async function setup(): Promise<{ base: string; target: string; sentinel: string; before: string; secret: Buffer }> {
  const base = await tempDir('bc-mal-');
  const target = join(base, 'deep', 'er', 'target');
  const sentinel = join(base, 'sentinel');
  await mkdir(target, { recursive: true });
  await mkdir(sentinel);
  const secret = randomBytes(64);
  await writeFile(join(sentinel, 'file'), secret);
  return { base, target, sentinel, before: await fingerprint(sentinel), secret };
}

async function expectRejected(
  layer: Buffer,
  cls: abstract new (...args: never[]) => BuildcacheError,
  entry: string | RegExp | undefined,
  options: ApplyOptions = {},
  prepare?: (target: string, sentinel: string) => Promise<void>,
): Promise<void> {
  const { base, target, sentinel, before, secret } = await setup();
  await prepare?.(target, sentinel);
  await assert.rejects(applyLayer([layer], target, options), (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    if (typeof entry === 'string') assert.equal(err.details.entry, entry, err.message);
    else if (entry) assert.match(err.message, entry);
    return true;
  });
  assert.equal(await fingerprint(sentinel), before, 'sentinel changed');
  assert.deepEqual(await readFile(join(sentinel, 'file')), secret);
  assert.equal(await exists(join('/tmp', uniq)), false, '/tmp was written');
  assert.equal(await exists(join(base, uniq)), false, 'the base dir was written');
  assert.equal(await exists(join(base, 'deep', uniq)), false);
  assert.equal(await exists(join(base, 'deep', 'er', uniq)), false);
  assert.equal(await exists(join(base, 'x')), false);
}

const file = (name: string, body = 'pwned'): Entry => ({ ...E, name, type: 'file', body });
const tarOf = (entries: Entry[]): Promise<Buffer> => buildTar(entries);
/** Directory `dir` and `n` small files in it: more than one batch of the applier's write queue. */
const filler = (dir: string, n = 300): Entry[] => [{ ...E, name: dir, type: 'dir', mode: 0o755 }, ...Array.from({ length: n }, (_, i) => file(`${dir}/f${i}`, `${i}`))];

describe('malicious layers', () => {
  it('../x', async () => expectRejected(await tarOf([file('../x')]), ErrUnsafeEntry, '../x'));
  it('a/../../x', async () => expectRejected(await tarOf([file('a/../../x')]), ErrUnsafeEntry, 'a/../../x'));
  it('absolute /etc/x', async () => expectRejected(await tarOf([file(`/tmp/${uniq}`)]), ErrUnsafeEntry, `/tmp/${uniq}`));
  it('symlink to /tmp, then a file through it', async () =>
    expectRejected(await tarOf([{ ...E, name: 'evil', type: 'symlink', linkname: '/tmp' }, file(`evil/${uniq}`)]), ErrUnsafeEntry, `evil/${uniq}`));
  it('symlink to ../../.., then a file through it', async () =>
    expectRejected(await tarOf([{ ...E, name: 'up', type: 'symlink', linkname: '../../..' }, file(`up/${uniq}`)]), ErrUnsafeEntry, `up/${uniq}`));
  it('symlink dir created in the same layer, deeper, then a write through it', async () =>
    expectRejected(
      await tarOf([
        { ...E, name: 'd', type: 'dir', mode: 0o755 },
        { ...E, name: 'd/s', type: 'symlink', linkname: '../../../../sentinel' },
        file('d/s/file', 'overwritten'),
      ]),
      ErrUnsafeEntry,
      'd/s/file',
    ));
  it('a symlink still in the write queue (after full batches of files), then a file through it', async () =>
    expectRejected(
      await tarOf([...filler('q'), { ...E, name: 'q/s', type: 'symlink', linkname: '../../../../sentinel' }, file('q/s/file', 'overwritten')]),
      ErrUnsafeEntry,
      'q/s/file',
    ));
  it('a file still in the write queue, then an entry under it', async () =>
    expectRejected(await tarOf([...filler('q'), file('q/f'), file('q/f/x')]), ErrUnsafeEntry, 'q/f/x'));
  it('symlinked parent already in the target (lower layer content)', async () =>
    expectRejected(await tarOf([file('lib/file', 'overwritten')]), ErrUnsafeEntry, 'lib/file', {}, async (target) => {
      await symlink('../../../sentinel', join(target, 'lib'));
    }));
  it('hard link to /etc/passwd', async () =>
    expectRejected(await tarOf([{ ...E, name: 'h', type: 'link', linkname: '/etc/passwd' }]), ErrUnsafeEntry, 'h'));
  it('hard link to ../x', async () =>
    expectRejected(await tarOf([{ ...E, name: 'h', type: 'link', linkname: '../../../sentinel/file' }]), ErrUnsafeEntry, 'h'));
  it('hard link through a symlink', async () =>
    expectRejected(
      await tarOf([{ ...E, name: 's', type: 'symlink', linkname: '../../../sentinel' }, { ...E, name: 'h', type: 'link', linkname: 's/file' }]),
      ErrUnsafeEntry,
      'h',
    ));
  for (const type of ['char', 'block', 'fifo'] as const) {
    it(`${type} entries are refused with allowDevices: false`, async () =>
      expectRejected(await tarOf([{ ...E, name: `dev-${type}`, type, devmajor: 1, devminor: 3 }]), ErrUnsafeEntry, `dev-${type}`, { allowDevices: false }));
  }
  it('whiteout of .. and of .', async () => {
    await expectRejected(await tarOf([file('.wh...', '')]), ErrUnsafeEntry, '.wh...');
    await expectRejected(await tarOf([file('a/.wh..', '')]), ErrUnsafeEntry, 'a/.wh..');
  });
  it('PAX header over 1 MiB', async () =>
    expectRejected(
      await tarOf([{ ...E, name: 'p', type: 'file', body: 'x', xattrs: new Map([['user.x', Buffer.alloc(2 << 20)]]) }]),
      ErrCorruptLayer,
      /PAX header/,
    ));
  it('truncated tar', async () => {
    const tar = await tarOf([file('ok', 'fine'), file('cut', 'y'.repeat(5000))]);
    await expectRejected(tar.subarray(0, 512 * 4), ErrCorruptLayer, 'cut');
  });
  it('truncated gzip', async () => {
    const gz = gzipSync(await tarOf([file('a', randomBytes(20000).toString('hex'))]));
    await expectRejected(gz.subarray(0, gz.length - 100), ErrCorruptLayer, /gzip/, { compression: 'gzip' });
  });
  it('gzip labelled as tar', async () => {
    const gz = gzipSync(await tarOf([file('a')]));
    await expectRejected(gz, ErrCorruptLayer, /labelled uncompressed/, { compression: 'uncompressed' });
  });
  it('tar labelled as gzip', async () => {
    await expectRejected(await tarOf([file('a')]), ErrCorruptLayer, /labelled gzip/, { compression: 'gzip' });
  });
});

describe('hostile but harmless layers', () => {
  it('a file replaces a symlink pointing outside instead of writing through it', async () => {
    const { target, sentinel, before } = await setup();
    await symlink('../../../sentinel/file', join(target, 'f'));
    await applyLayer([await tarOf([file('f', 'new')])], target);
    assert.equal(await readFile(join(target, 'f'), 'utf8'), 'new');
    assert.ok((await lstat(join(target, 'f'))).isFile());
    assert.equal(await fingerprint(sentinel), before);
  });
  it('entries written in batches land in layer order: replaced names, directory metadata after content', async () => {
    const { target } = await setup();
    await applyLayer([
      await tarOf([
        ...filler('a'),
        file('x', 'first'),
        { ...E, name: 'y', type: 'symlink', linkname: 'nowhere' },
        { ...E, name: 'z', type: 'dir', mode: 0o755 },
        file('z/inner'),
        ...filler('b'),
        { ...E, name: 'n', type: 'dir', mode: 0o755 },
        file('n/implicit/deep', 'under a parent with no entry'),
        { ...E, name: 'x', type: 'dir', mode: 0o700 },
        file('x/c', 'child'),
        file('y', 'now a file'),
        { ...E, name: 'z', type: 'symlink', linkname: 'a' },
        { ...E, name: 'a', type: 'dir', mode: 0o750, mtime: 1_600_000_000 },
      ]),
    ], target);
    assert.equal((await readdir(join(target, 'a'))).length, 300);
    assert.equal(await readFile(join(target, 'a/f299'), 'utf8'), '299');
    assert.equal(await readFile(join(target, 'x/c'), 'utf8'), 'child');
    assert.equal(await readFile(join(target, 'n/implicit/deep'), 'utf8'), 'under a parent with no entry');
    assert.equal(await readFile(join(target, 'y'), 'utf8'), 'now a file');
    assert.equal(await readlink(join(target, 'z')), 'a');
    const a = await lstat(join(target, 'a'));
    assert.equal(a.mode & 0o7777, 0o750);
    assert.equal(a.mtimeMs, 1_600_000_000_000);
  });
  it('leading ./ is fine', async () => {
    const { target } = await setup();
    await applyLayer([await tarOf([{ ...E, name: './d', type: 'dir', mode: 0o755 }, file('./d/f', 'ok')])], target);
    assert.equal(await readFile(join(target, 'd', 'f'), 'utf8'), 'ok');
  });
  it('xattrs: trusted.* dropped, one the filesystem refuses (user.* on a symlink) skipped, security.capability kept', async () => {
    const { target } = await setup();
    const cap = Buffer.alloc(20);
    cap.writeUInt32LE(0x02000001, 0); // VFS_CAP_REVISION_2 | effective
    cap.writeUInt32LE(1 << 10, 4); // cap_net_bind_service permitted
    const xattrs = new Map([
      ['trusted.foo', Buffer.from('bar')],
      ['trusted.overlay.opaque', Buffer.from('y')],
      ['security.capability', cap],
      ['user.ok', Buffer.from('1')],
    ]);
    const { logger, records } = recordingLogger();
    await applyLayer(
      [await tarOf([{ ...file('f', 'x'), xattrs }, { ...E, name: 'ln', type: 'symlink', linkname: 'f', xattrs: new Map([['user.x', Buffer.from('v')]]) }])],
      target,
      { logger },
    );
    const skipped = records.filter((r) => r['xattr'] !== undefined).map((r) => `${String(r['entry'])} ${String(r['xattr'])}`);
    assert.deepEqual(skipped.sort(), ['f trusted.foo', 'f trusted.overlay.opaque', 'ln user.x'], 'each skipped xattr is logged at debug');
    const [f, ln] = await listXattrs([join(target, 'f'), join(target, 'ln')]);
    assert.deepEqual([...f!.keys()].sort(), ['security.capability', 'user.ok']);
    assert.deepEqual(f!.get('security.capability'), cap);
    assert.deepEqual([...ln!.keys()], []);
    assert.equal((await lstat(join(target, 'ln'))).isSymbolicLink(), true);
  });

  it('devices and fifos are created by default (as root)', async () => {
    const { target } = await setup();
    await applyLayer(
      [await tarOf([{ ...E, name: 'null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }, { ...E, name: 'pipe', type: 'fifo' }])],
      target,
    );
    const st = await lstat(join(target, 'null'));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, (1 << 8) | 3);
    assert.equal(st.mode & 0o7777, 0o666);
    assert.ok((await lstat(join(target, 'pipe'))).isFIFO());
  });
});
