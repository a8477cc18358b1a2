/**
 * A layer whose entries carry xattrs (Python's tarfile, PAX `SCHILY.xattr.*`) extracts as GNU tar
 * `--xattrs` extracts it: the small files, directories and symlinks among them go through the
 * applier's write batches (their xattrs set once their batch is written), a large file streamed;
 * a `security.capability` on a file owned by another user survives (it is set after the chown).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { applyLayer } from '@buildcache/snapshot';
import { lgetxattr, llistxattr } from '@buildcache/sys';

const run = promisify(execFile);

/** 300 small files (more than one batch) with one or two user xattrs, every 7th owned by 1000:1000; dirs with xattrs; a symlink; a 2 MiB file with xattrs; a file with a capability. */
const PY = String.raw`
import io, struct, sys, tarfile
cap = struct.pack('<IIIII', 0x02000001, 1 << 10, 0, 0, 0)  # v2, effective, CAP_NET_BIND_SERVICE
def add(t, name, kind=tarfile.REGTYPE, data=b'', xattrs=None, uid=0, mode=0o644, link=''):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.uid, info.gid, info.mode, info.mtime, info.linkname = kind, len(data), uid, uid, mode, 1700000000, link
    info.pax_headers = {'SCHILY.xattr.' + k: v for k, v in (xattrs or {}).items()}
    t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    add(t, 'd', tarfile.DIRTYPE, mode=0o755, xattrs={'user.dir': 'top'})
    for i in range(300):
        if i % 100 == 0: add(t, f'd/s{i}', tarfile.DIRTYPE, mode=0o750, xattrs={'user.dir': f'sub{i}'})
        x = {'user.n': str(i)}
        if i % 3 == 0: x['user.other'] = 'v' * (i + 1)
        add(t, f'd/s{i - i % 100}/f{i}', data=bytes([i % 256]) * (i * 13), xattrs=x, uid=1000 if i % 7 == 0 else 0)
        if i % 50 == 0: add(t, f'd/l{i}', tarfile.SYMTYPE, link=f's{i}/f{i}', mode=0o777)
    add(t, 'd/big.bin', data=b'B' * (2 << 20), xattrs={'user.big': 'yes'})
    add(t, 'd/cap', data=b'#!/bin/true\n', mode=0o755, uid=1000, xattrs={'security.capability': cap.decode('latin1')})
`;

/** Every path under `root` with its type, mode, owner, mtime, content or link target, and xattrs. */
async function snapshotOf(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const path = join(root, rel);
    const st = await lstat(path);
    const names = (await llistxattr(path)).map((n) => n.toString()).sort();
    const xattrs = await Promise.all(names.map(async (n) => `${n}=${(await lgetxattr(path, n)).toString('hex')}`));
    const body = st.isFile() ? (await readFile(path)).toString('base64').slice(0, 64) + `:${st.size}` : st.isSymbolicLink() ? await readlink(path) : '';
    out.set(rel, [st.mode.toString(8), st.uid, st.gid, st.isDirectory() ? '' : st.mtimeMs, body, ...xattrs].join(' '));
    if (st.isDirectory()) for (const e of (await readdir(path)).sort()) await walk(rel === '' ? e : `${rel}/${e}`);
  };
  await walk('d');
  return out;
}

describe('layers with xattrs', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bc-layer-xattrs-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a PAX layer with xattrs on batched small files, dirs, a streamed file and a capability extracts as GNU tar --xattrs extracts it', async () => {
    const tar = join(dir, 'xattrs.tar');
    await run('python3', ['-c', PY, tar]);
    const gnu = join(dir, 'gnu');
    const ours = join(dir, 'ours');
    await mkdir(gnu);
    await mkdir(ours);
    await run('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tar, '-C', gnu]);
    const result = await applyLayer(createReadStream(tar), ours);
    assert.equal(result.entries, 1 + 3 + 300 + 6 + 2);
    const want = await snapshotOf(gnu);
    const got = await snapshotOf(ours);
    assert.ok(want.get('d/s0/f7')!.includes('user.n='), 'GNU tar restored the xattrs (the comparison means something)');
    assert.ok(want.get('d/cap')!.includes('security.capability='), 'GNU tar restored the capability');
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [path, line] of want) assert.equal(got.get(path), line, path);
  });
});
