/**
 * writeEntries against the real kernel: files, directories, symlinks and directory metadata in
 * order with their owner, mode and times; nothing ever lands outside the root (symlinked parents,
 * `..`, absolute paths, an existing symlink at the name), with openat2 and with the walk fallback.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENTRY, writeEntries } from '../src/index.js';
import type { EntryWrite } from '../src/index.js';

const isRoot = process.getuid?.() === 0;
const meta = { mode: 0o640, uid: 1234, gid: 5678, mtime: 1_600_000_000.123456, chown: isRoot };

for (const walk of [false, true]) {
  describe(`writeEntries (${walk ? 'per-component walk' : 'openat2 where the kernel has it'})`, () => {
    let base: string;
    let root: string;
    let outside: string;
    before(async () => {
      base = await mkdtemp(join(tmpdir(), 'bc-sys-entries-'));
      outside = join(base, 'outside');
      await mkdir(outside);
    });
    after(async () => {
      await rm(base, { recursive: true, force: true });
    });
    let n = 0;
    const freshRoot = async (): Promise<string> => {
      root = join(base, `root${n++}`);
      await mkdir(root);
      return root;
    };
    const write = (entries: EntryWrite[]): Promise<void> => writeEntries(root, entries, { walk });

    it('creates files, directories and symlinks in order, then directory metadata', async () => {
      await freshRoot();
      await write([
        { kind: ENTRY.DIR, path: 'a' },
        { kind: ENTRY.DIR, path: 'a/b' },
        { kind: ENTRY.FILE, path: 'a/b/f', data: Buffer.from('hello'), ...meta, mode: 0o4755 },
        { kind: ENTRY.FILE, path: 'top', data: Buffer.alloc(0), ...meta },
        { kind: ENTRY.SYMLINK, path: 'a/link', link: '/etc/passwd', ...meta },
        { kind: ENTRY.META, path: 'a/b', ...meta, mode: 0o1750 },
      ]);
      const f = await lstat(join(root, 'a/b/f'), { bigint: true }); // before reading it sets atime
      assert.equal(await readFile(join(root, 'a/b/f'), 'utf8'), 'hello');
      assert.equal(Number(f.mode & 0o7777n), 0o4755);
      assert.equal(f.mtimeNs, 1_600_000_000_123_456_000n); // whole microseconds, as fs.futimes
      assert.equal(f.atimeNs, f.mtimeNs);
      if (isRoot) assert.deepEqual([f.uid, f.gid], [1234n, 5678n]);
      assert.equal((await lstat(join(root, 'top'))).size, 0);
      assert.equal(await readlink(join(root, 'a/link')), '/etc/passwd');
      const l = await lstat(join(root, 'a/link'), { bigint: true });
      assert.equal(l.mtimeNs, 1_600_000_000_123_456_000n);
      if (isRoot) assert.deepEqual([l.uid, l.gid], [1234n, 5678n]);
      const d = await lstat(join(root, 'a/b'), { bigint: true });
      assert.ok(d.isDirectory());
      assert.equal(Number(d.mode & 0o7777n), 0o1750);
      assert.equal(d.mtimeNs, 1_600_000_000_123_456_000n);
      assert.equal(Number((await lstat(join(root, 'a'))).mode & 0o7777), 0o700);
    });

    it('never resolves through a symlink: a symlinked parent fails and nothing lands outside', async () => {
      await freshRoot();
      await symlink(outside, join(root, 'escape'));
      await mkdir(join(root, 'd'));
      await symlink('../../outside', join(root, 'd/up'));
      for (const path of ['escape/f', 'd/up/f', 'escape/sub/f']) {
        await assert.rejects(write([{ kind: ENTRY.FILE, path, data: Buffer.from('x'), ...meta }]), (err: NodeJS.ErrnoException & { index?: number }) => {
          assert.ok(err.code === 'ELOOP' || err.code === 'ENOTDIR', `${path}: ${err.code}`);
          assert.equal(err.path, path);
          assert.equal(err.index, 0);
          return true;
        });
      }
      await assert.rejects(write([{ kind: ENTRY.DIR, path: 'escape/newdir' }]), { index: 0 });
      await assert.rejects(write([{ kind: ENTRY.META, path: 'escape', ...meta }]), (err: NodeJS.ErrnoException) => err.code === 'ELOOP' || err.code === 'ENOTDIR');
      assert.deepEqual(await readdir(outside), []);
    });

    it('an existing symlink at the name is never followed (O_EXCL): EEXIST, its target untouched', async () => {
      await freshRoot();
      await writeFile(join(outside, 'victim'), 'safe');
      await symlink(join(outside, 'victim'), join(root, 'name'));
      await assert.rejects(write([{ kind: ENTRY.FILE, path: 'name', data: Buffer.from('pwned'), ...meta }]), { code: 'EEXIST', syscall: 'openat' });
      assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'safe');
      await rm(join(outside, 'victim'));
    });

    it("refuses '..', '.', empty and absolute components (EINVAL) and stops at the first failure", async () => {
      await freshRoot();
      for (const path of ['../x', 'a/../../x', './x', 'a//x', '/etc/x', '']) {
        await assert.rejects(write([{ kind: ENTRY.FILE, path, data: Buffer.from('x'), ...meta }]), { code: 'EINVAL', index: 0 });
      }
      await assert.rejects(
        write([
          { kind: ENTRY.FILE, path: 'one', data: Buffer.from('1'), ...meta },
          { kind: ENTRY.FILE, path: 'missing/two', data: Buffer.from('2'), ...meta },
          { kind: ENTRY.FILE, path: 'three', data: Buffer.from('3'), ...meta },
        ]),
        { code: 'ENOENT', path: 'missing/two', index: 1 },
      );
      assert.deepEqual((await readdir(root)).sort(), ['one']);
      assert.deepEqual(await readdir(outside), []);
    });

    it('rejects malformed items synchronously with a TypeError naming the item', () => {
      assert.throws(() => writeEntries(root, [{ kind: ENTRY.FILE, path: 'x' } as unknown as EntryWrite]), { code: 'ERR_INVALID_ARG_TYPE', message: /entries\[0\]/ });
      const nul = { kind: ENTRY.DIR, path: 'a\0b' } as const;
      assert.throws(() => writeEntries(root, [{ kind: ENTRY.DIR, path: 'ok' }, nul]), { code: 'ERR_INVALID_ARG_TYPE', message: /entries\[1\]/ });
    });
  });
}
