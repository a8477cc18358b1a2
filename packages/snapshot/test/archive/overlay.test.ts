/**
 * Whiteouts and opaque dirs in plain and overlay-upper mode (checked through a real overlay
 * mount), and the overlay fast-path diff against the generic diff for the same change.
 */
import assert from 'node:assert/strict';
import { chmod, link, mkdir, readFile, readdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { applyLayer, writeDiff } from '../../src/embedded/archive/index.js';
import type { DiffSource } from '../../src/embedded/archive/index.js';
import { E, buildTar, cleanup, mountOverlay, run, snapshotTree, tempDir } from './helpers.js';

after(cleanup);

async function lowerTree(root: string): Promise<void> {
  await mkdir(join(root, 'a'), { recursive: true });
  await mkdir(join(root, 'b', 'c'), { recursive: true });
  await mkdir(join(root, 'opq', 'sub'), { recursive: true });
  await writeFile(join(root, 'a', 'old'), 'old');
  await writeFile(join(root, 'a', 'keep'), 'keep');
  await writeFile(join(root, 'b', 'c', 'd'), 'd');
  await writeFile(join(root, 'opq', 'x'), 'x');
  await writeFile(join(root, 'opq', 'sub', 'y'), 'y');
  await writeFile(join(root, 'gone'), 'g');
  // fixed mtimes, so that two trees built a moment apart compare equal
  for (const p of await readdir(root, { recursive: true })) await utimes(join(root, p), 1_650_000_000, 1_650_000_000);
}

const layer = (): Promise<Buffer> =>
  buildTar([
    { ...E, name: 'a', type: 'dir', mode: 0o755 },
    { ...E, name: 'a/.wh.old', type: 'file', body: '' },
    { ...E, name: 'b', type: 'dir', mode: 0o755 },
    { ...E, name: 'b/.wh.c', type: 'file', body: '' },
    { ...E, name: '.wh.gone', type: 'file', body: '' },
    { ...E, name: 'opq', type: 'dir', mode: 0o711 },
    { ...E, name: 'opq/-early', type: 'file', body: 'written before the marker' },
    { ...E, name: 'opq/.wh..wh..opq', type: 'file', body: '' },
    { ...E, name: 'opq/new', type: 'file', body: 'new' },
    { ...E, name: 'opq/sub', type: 'dir', mode: 0o755 },
    { ...E, name: 'opq/sub/z', type: 'file', body: 'z' },
    // explicit parents, so directory mtimes do not depend on when the test ran
    { ...E, name: 'newdir', type: 'dir', mode: 0o755 },
    { ...E, name: 'newdir/f', type: 'file', body: 'f' },
  ]);

const EXPECTED = ['a', 'a/keep', 'b', 'newdir', 'newdir/f', 'opq', 'opq/-early', 'opq/new', 'opq/sub', 'opq/sub/z'];

describe('whiteouts and opaque directories', () => {
  it('plain mode deletes whited-out paths and empties opaque dirs of lower content', async () => {
    const target = await tempDir();
    await lowerTree(target);
    await applyLayer([await layer()], target);
    assert.deepEqual(Object.keys(await snapshotTree(target)), EXPECTED);
    assert.equal(await readFile(join(target, 'opq', '-early'), 'utf8'), 'written before the marker');
  });

  it('overlay-upper mode writes overlay whiteouts and opaque xattrs; the mount shows the same tree', async () => {
    const base = await tempDir();
    const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(base, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await lowerTree(lower);
    await applyLayer([await layer()], upper, { mode: 'overlay-upper', lowerDirs: [lower] });
    const plain = await tempDir();
    await lowerTree(plain);
    await applyLayer([await layer()], plain);
    await mountOverlay([lower], upper, work, merged);
    assert.deepEqual(await snapshotTree(merged), await snapshotTree(plain));
    assert.deepEqual(Object.keys(await snapshotTree(merged)), EXPECTED);
    // the lower layer is untouched
    assert.equal(await readFile(join(lower, 'a', 'old'), 'utf8'), 'old');
  });

  it('a whiteout then an entry of the same name in one layer: the entry replaces the lower one (both modes)', async () => {
    // a/ is new in the upper dir (fresh), yet a/old and dir a/sub exist below
    const replace = await buildTar([
      { ...E, name: 'a', type: 'dir', mode: 0o755 },
      { ...E, name: 'b', type: 'dir', mode: 0o755 },
      { ...E, name: 'a/.wh.old', type: 'file', body: '' },
      { ...E, name: 'a/old', type: 'file', body: 'replaced' },
      { ...E, name: 'b/.wh.c', type: 'file', body: '' },
      { ...E, name: 'b/c', type: 'dir', mode: 0o755 },
      { ...E, name: 'b/c/e', type: 'file', body: 'e' },
    ]);
    const base = await tempDir();
    const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(base, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await lowerTree(lower);
    await applyLayer([replace], upper, { mode: 'overlay-upper', lowerDirs: [lower] });
    await mountOverlay([lower], upper, work, merged);
    const plain = await tempDir();
    await lowerTree(plain);
    await applyLayer([replace], plain);
    for (const root of [merged, plain]) {
      assert.equal(await readFile(join(root, 'a', 'old'), 'utf8'), 'replaced');
      assert.deepEqual((await readdir(join(root, 'b', 'c'))).sort(), ['e'], 'the new b/c hides the lower one');
    }
    assert.deepEqual(await snapshotTree(merged), await snapshotTree(plain));
  });

  it('a hard link to a lower-only file is copied up in overlay-upper mode', async () => {
    const base = await tempDir();
    const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(base, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await lowerTree(lower);
    await applyLayer([await buildTar([{ ...E, name: 'hl', type: 'link', linkname: 'a/keep' }])], upper, { mode: 'overlay-upper', lowerDirs: [lower] });
    await mountOverlay([lower], upper, work, merged);
    assert.equal(await readFile(join(merged, 'hl'), 'utf8'), 'keep');
    assert.match((await snapshotTree(merged))['hl']!, /inode-of=a\/keep/);
  });
});

describe('overlay fast-path diff', () => {
  it('gives the same bytes as the generic diff for the same change, and applies back to the merged tree', async () => {
    const base = await tempDir();
    const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(base, d)) as [string, string, string, string];
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await lowerTree(lower);
    await mkdir(join(lower, 'same', 'deep'), { recursive: true });
    await writeFile(join(lower, 'same', 'deep', 'file'), 'unchanged');
    await writeFile(join(lower, 'touched'), 'same-content');
    await utimes(join(lower, 'touched'), 1_600_000_000, 1_600_000_000);
    await mountOverlay([lower], upper, work, merged);
    // changes through the mount
    await writeFile(join(merged, 'a', 'keep'), 'changed content');
    await rm(join(merged, 'a', 'old'));
    await rm(join(merged, 'b', 'c'), { recursive: true });
    await rm(join(merged, 'opq'), { recursive: true });
    await mkdir(join(merged, 'opq'));
    await writeFile(join(merged, 'opq', 'x'), 'recreated');
    await chmod(join(merged, 'gone'), 0o600);
    await mkdir(join(merged, 'new', 'nested'), { recursive: true });
    await writeFile(join(merged, 'new', 'nested', 'f'), 'f');
    await link(join(merged, 'new', 'nested', 'f'), join(merged, 'new', 'hl'));
    await symlink('nested/f', join(merged, 'new', 'sl'));
    await rename(join(merged, 'same', 'deep', 'file'), join(merged, 'same', 'moved'));
    // copy-up without a real change: content rewritten identically, mtime restored
    await writeFile(join(merged, 'touched'), 'same-content');
    await utimes(join(merged, 'touched'), 1_600_000_000, 1_600_000_000);
    await run('sync', []);

    const collectDiff = async (source: DiffSource): Promise<{ tar: Buffer; diffID: string }> => {
      const parts: Buffer[] = [];
      const r = await writeDiff(source, (c) => {
        parts.push(Buffer.from(c));
      });
      return { tar: Buffer.concat(parts), diffID: r.diffID };
    };
    const fast = await collectDiff({ kind: 'overlay-upper', upperDir: upper, lower });
    const generic = await collectDiff({ kind: 'trees', upper: merged, lower });
    assert.equal(fast.diffID, generic.diffID);
    assert.ok(fast.tar.equals(generic.tar));
    // an opaque dir is expanded into per-name whiteouts, and the unchanged copy-up is not emitted
    const listing = await tarNames(fast.tar);
    assert.ok(listing.includes('opq/sub/') === false);
    assert.ok(listing.includes('opq/.wh.sub'));
    assert.ok(!listing.includes('touched'));
    assert.ok(listing.includes('b/.wh.c'));
    assert.ok(!listing.some((n) => n.includes('.wh..wh..opq')));
    // applying the diff onto a copy of lower reproduces the merged tree
    const copy = await tempDir();
    await run('cp', ['-a', `${lower}/.`, copy]);
    await applyLayer([fast.tar], copy);
    assert.deepEqual(await snapshotTree(copy), await snapshotTree(merged));
    assert.deepEqual((await readdir(join(copy, 'opq'))).sort(), ['x']);
  });
});

async function tarNames(tar: Buffer): Promise<string[]> {
  const dir = await tempDir();
  const file = join(dir, 'l.tar');
  await writeFile(file, tar);
  return (await run('tar', ['-tf', file])).split('\n').filter(Boolean);
}
