/**
 * Content checksums of records on every backend, and of the same trees on the host: what a
 * digest covers (content, mode, owner, link target; not mtime), persistence per record, mutable
 * refs, symlinks resolved inside the root, include/exclude and wildcards.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ErrNotFound } from '@buildcache/errdefs';
import type { CacheManager, ImmutableRef, MutableRef } from '@buildcache/cache';
import { checksum, checksumDir, CHECKSUMS_KEY, EMPTY_DIGEST } from '@buildcache/contenthash';
import { BACKENDS } from '../support/backends.js';
import { openTestCache, type TestCache } from '../cache/helpers.js';

/** path → file content, `{ link }` for a symlink, `{ dir }` for an empty directory. */
type Spec = Record<string, string | { link: string } | { dir: true }>;

const TREE: Spec = {
  'a.txt': 'alpha',
  'src/main.go': 'package main',
  'src/util/u.go': 'package util',
  'src/README.md': '# readme',
  'docs/guide.md': 'guide',
  'empty': { dir: true },
  'link-to-src': { link: 'src' },
  'abs-link': { link: '/src/main.go' },
  'escape': { link: '../../../../src/util' },
  'dangling': { link: 'nowhere' },
};

/** Writes `spec` under `root` with fixed modes and owners (so that host and record trees agree). */
async function populate(root: string, spec: Spec): Promise<void> {
  for (const [path, v] of Object.entries(spec)) {
    const p = join(root, path);
    await mkdir(dirname(p), { recursive: true });
    if (typeof v === 'string') {
      await writeFile(p, v);
      await chmod(p, 0o644);
    } else if ('link' in v) await symlink(v.link, p);
    else await mkdir(p, { recursive: true });
  }
  // every directory 0755, owned by root
  const dirs = new Set<string>(['']);
  for (const path of Object.keys(spec)) {
    for (let d = dirname(path); d !== '.'; d = dirname(d)) dirs.add(d);
    const v = spec[path];
    if (typeof v === 'object' && 'dir' in v) dirs.add(path);
  }
  for (const d of dirs) {
    await chmod(join(root, d), 0o755);
    await chown(join(root, d), 0, 0);
  }
}

async function recordOf(cache: CacheManager, spec: Spec): Promise<ImmutableRef> {
  const m = await cache.new(undefined, { retain: true });
  const mnt = await m.mount();
  try {
    await populate(mnt.target, spec);
  } finally {
    await mnt.unmount();
  }
  return m.commit();
}

async function writeThrough(m: MutableRef, fn: (root: string) => Promise<void>): Promise<void> {
  const mnt = await m.mount();
  try {
    await fn(mnt.target);
  } finally {
    await mnt.unmount();
  }
}

describe('checksumDir on the host', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bc-contenthash-'));
    await populate(dir, TREE);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('mtime-only changes keep the digest; content, mode, owner and link target change it', async () => {
    const before = await checksumDir(dir);
    assert.match(before, /^sha256:[0-9a-f]{64}$/);
    await utimes(join(dir, 'a.txt'), new Date(1000), new Date(2000));
    await utimes(join(dir, 'src'), new Date(1000), new Date(3000));
    assert.equal(await checksumDir(dir), before, 'mtime is not part of the digest');
    const changes: [string, () => Promise<void>, () => Promise<void>][] = [
      ['content', () => writeFile(join(dir, 'a.txt'), 'alphA'), () => writeFile(join(dir, 'a.txt'), 'alpha')],
      ['mode', () => chmod(join(dir, 'src/main.go'), 0o755), () => chmod(join(dir, 'src/main.go'), 0o644)],
      ['owner', () => chown(join(dir, 'docs/guide.md'), 1000, 1000), () => chown(join(dir, 'docs/guide.md'), 0, 0)],
      [
        'link target',
        async () => {
          await rm(join(dir, 'dangling'));
          await symlink('elsewhere', join(dir, 'dangling'));
        },
        async () => {
          await rm(join(dir, 'dangling'));
          await symlink('nowhere', join(dir, 'dangling'));
        },
      ],
      ['a new empty file', () => writeFile(join(dir, 'empty/new'), ''), () => rm(join(dir, 'empty/new'))],
    ];
    for (const [what, change, undo] of changes) {
      await change();
      assert.notEqual(await checksumDir(dir), before, `${what} changes the digest`);
      await undo();
      assert.equal(await checksumDir(dir), before, `undoing the ${what} change restores it`);
    }
  });

  test('.dockerignore patterns: ** , ! re-include, leading /; a missing path is ErrNotFound', async () => {
    const ctx = await mkdtemp(join(tmpdir(), 'bc-dockerignore-'));
    try {
      await populate(ctx, { 'keep.txt': 'k', 'a/b/c.log': 'log', 'a/b/keep.md': 'md', 'build/out.o': 'o', 'x/build/y': 'y' });
      const base = await checksumDir(ctx);
      const without = await mkdtemp(join(tmpdir(), 'bc-dockerignore-ref-'));
      try {
        // what the patterns below leave: no *.log anywhere, /build only at the root, build/ re-included file
        await populate(without, { 'keep.txt': 'k', 'a/b/keep.md': 'md', 'x/build/y': 'y' });
        const patterns = ['**/*.log', '/build', '# a comment', '', 'x/*/nothing'];
        assert.equal(await checksumDir(ctx, { dockerignore: patterns }), await checksumDir(without));
        await writeFile(join(ctx, '.dockerignore'), patterns.join('\n') + '\n.dockerignore\n');
        assert.equal(await checksumDir(ctx, { dockerignore: true }), await checksumDir(without));
        assert.notEqual(await checksumDir(ctx, { dockerignore: true }), base);
        // ! re-includes one file of an ignored directory: the directory holds only that file
        await populate(without, { 'build/out.o': 'o' });
        assert.equal(
          await checksumDir(ctx, { dockerignore: ['**/*.log', 'build', '!build/out.o', '.dockerignore'] }),
          await checksumDir(without),
        );
      } finally {
        await rm(without, { recursive: true, force: true });
      }
      await assert.rejects(checksumDir(ctx, { path: 'nope' }), ErrNotFound);
      await assert.rejects(checksumDir(join(ctx, 'nope')), ErrNotFound);
    } finally {
      await rm(ctx, { recursive: true, force: true });
    }
  });
});

for (const kind of BACKENDS) {
  describe(`checksum of records on ${kind.name}`, () => {
    let t: TestCache;
    let host: string;
    before(async () => {
      t = await openTestCache(kind);
      host = await mkdtemp(join(tmpdir(), 'bc-contenthash-host-'));
      await populate(host, TREE);
    });
    after(async () => {
      await t.close();
      await rm(host, { recursive: true, force: true });
    });

    test('a record and the same tree on the host have the same checksums, path by path', async () => {
      const ref = await recordOf(t.cache, TREE);
      try {
        for (const path of ['/', 'src', '/src/main.go', 'a.txt', 'empty', 'link-to-src', 'dangling']) {
          assert.equal(await checksum(ref, path), await checksumDir(host, { path }), path);
        }
        assert.notEqual(await checksum(ref, 'src/main.go'), await checksum(ref, 'src/util/u.go'));
      } finally {
        await ref.release();
      }
    });

    test('symlinks: parents always followed, the last one with followLinks, never out of the root', async () => {
      const ref = await recordOf(t.cache, TREE);
      try {
        const src = await checksum(ref, 'src');
        assert.equal(await checksum(ref, 'link-to-src/main.go'), await checksum(ref, 'src/main.go'), 'a parent link is followed');
        assert.notEqual(await checksum(ref, 'link-to-src'), src, 'the last link is not followed by default');
        assert.equal(await checksum(ref, 'link-to-src', { followLinks: true }), src);
        assert.equal(await checksum(ref, 'abs-link', { followLinks: true }), await checksum(ref, 'src/main.go'), 'an absolute target is inside the root');
        assert.equal(await checksum(ref, 'escape', { followLinks: true }), await checksum(ref, 'src/util'), '.. stops at the root');
        await assert.rejects(checksum(ref, 'dangling', { followLinks: true }), ErrNotFound);
        await assert.rejects(checksum(ref, 'no/such/file'), (err: Error) => err instanceof ErrNotFound && err.message.includes(ref.id));
      } finally {
        await ref.release();
      }
    });

    test('include, exclude and wildcards select paths as BuildKit does', async () => {
      const ref = await recordOf(t.cache, TREE);
      try {
        const goOnly = await checksum(ref, 'src', { include: ['**/*.go'] });
        assert.equal(goOnly, await checksumDir(host, { path: 'src', include: ['**/*.go'] }));
        assert.notEqual(goOnly, await checksum(ref, 'src'));
        assert.equal(await checksum(ref, 'src', { exclude: ['*.md'] }), await checksum(ref, 'src', { include: ['main.go', 'util'] }));
        assert.equal(await checksum(ref, 'src', { exclude: ['**'] }), EMPTY_DIGEST, 'nothing kept');
        assert.equal(await checksum(ref, 'a.txt', { exclude: ['nothing'] }), await checksum(ref, 'a.txt'), 'one kept path with the asked name: its digest');
        assert.equal(await checksum(ref, 'src/*.go', { wildcard: true }), await checksumDir(host, { path: 'src/*.go', wildcard: true }));
        assert.notEqual(await checksum(ref, 'src/*.go', { wildcard: true }), await checksum(ref, 'src/*', { wildcard: true }));
        assert.equal(await checksum(ref, 'nomatch*', { wildcard: true }), EMPTY_DIGEST);
      } finally {
        await ref.release();
      }
    });

    test('a record keeps what was computed (no mount the next time, after a reopen too); a mutable ref keeps nothing', async () => {
      const ref = await recordOf(t.cache, TREE);
      const id = ref.id;
      const first = await checksum(ref, '/');
      assert.ok(await ref.getExternal(CHECKSUMS_KEY), 'kept with the record');
      await ref.release();
      const cache = await t.reopen();
      const again = await cache.get(id);
      let mounts = 0;
      const mount = again.mount.bind(again);
      again.mount = (...args) => {
        mounts++;
        return mount(...args);
      };
      try {
        assert.equal(await checksum(again, '/'), first);
        assert.equal(await checksum(again, 'src/util/u.go'), await checksumDir(host, { path: 'src/util/u.go' }));
        assert.equal(mounts, 0, 'answered from the kept checksums');
      } finally {
        await again.release();
      }

      const m = await cache.new(undefined, { retain: true });
      await writeThrough(m, (root) => populate(root, { 'w.txt': 'one' }));
      const one = await checksum(m, 'w.txt');
      await writeThrough(m, (root) => writeFile(join(root, 'w.txt'), 'two'));
      assert.notEqual(await checksum(m, 'w.txt'), one, 'a mutable ref is checksummed afresh');
      const imm = await m.commit();
      assert.equal(await imm.getExternal(CHECKSUMS_KEY), undefined);
      await imm.release();
      await cache.prune([{ all: true }]);
    });
  });
}
