/** Crash safety of the embedded backend: store lock, and reopening after SIGKILL at random points. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ErrInvalidArgument, ErrStoreLocked } from '@buildcache/errdefs';
import { openEmbeddedBackend } from '../../src/embedded/index.js';
import { removeTree } from '../../src/embedded/fsutil.js';
import { mountPointsUnder } from '../../src/mount-cleanup.js';
import { mountOne, unmount } from '../../src/mount.js';
import { availableDrivers, collect, readAll, rejectsWith, withMount } from './helpers.js';

const drivers = await availableDrivers();
const worker = join(dirname(fileURLToPath(import.meta.url)), 'crash-worker.js');

function start(args: string[]): { child: ChildProcess; output: string[]; waitFor: (n: number) => Promise<void> } {
  const child = spawn(process.execPath, [worker, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let count = 0;
  let stderr = '';
  const output: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    const lines = d.toString().split('\n').filter(Boolean);
    output.push(...lines);
    count += lines.length;
    waiters.splice(0).forEach((w) => w());
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) => child.on('exit', (code) => reject(new Error(`worker exited ${code}: ${stderr}`))));
  exited.catch(() => undefined);
  return {
    child,
    output,
    waitFor: async (n) => {
      while (count < n) await Promise.race([new Promise<void>((r) => waiters.push(r)), exited]);
    },
  };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

describe('embedded durability', () => {
  it('a second process opening the same root gets ErrStoreLocked naming the path', async () => {
    const root = await mkdtemp(join(tmpdir(), 'bc-lock-'));
    const w = start(['hold', root]);
    try {
      await w.waitFor(1);
      const err = await rejectsWith(openEmbeddedBackend({ root }), ErrStoreLocked, root);
      assert.equal((err as ErrStoreLocked).details.path, join(root, 'meta'));
      await kill(w.child);
      const b = await openEmbeddedBackend({ root });
      await b.close();
    } finally {
      await kill(w.child);
      await removeTree(root);
    }
  });

  it('open removes leftover temp mounts and snapshot dirs without records; a root keeps its driver', async () => {
    const root = await mkdtemp(join(tmpdir(), 'bc-open-'));
    try {
      let b = await openEmbeddedBackend({ root, snapshotter: 'native' });
      const keep = (await b.snapshotter.prepare('keep', undefined))[0]!.source;
      await b.close();
      await rejectsWith(openEmbeddedBackend({ root, snapshotter: 'overlayfs' }), ErrInvalidArgument, 'native');
      const orphan = join(root, 'snapshots', '4242', 'fs');
      await mkdir(orphan, { recursive: true });
      await writeFile(join(orphan, 'f'), 'x');
      const src = await mkdtemp(join(tmpdir(), 'bc-src-'));
      const leftover = join(root, 'mounts', 'buildcache-mount-left');
      await mkdir(leftover, { recursive: true });
      await mountOne({ type: 'bind', source: src, options: ['rbind', 'ro'] }, leftover);
      b = await openEmbeddedBackend({ root });
      try {
        assert.equal(b.snapshotter.name, 'native');
        assert.deepEqual(await mountPointsUnder(root), []);
        assert.deepEqual(await readdir(join(root, 'mounts')), []);
        assert.ok(!(await access(join(root, 'snapshots', '4242')).then(() => true, () => false)));
        assert.ok(await access(keep).then(() => true, () => false));
        assert.ok(await access(src).then(() => true, () => false), 'the mount source itself is untouched');
        assert.equal((await b.snapshotter.stat('keep')).kind, 'active');
      } finally {
        await b.close();
        await removeTree(src);
      }
    } finally {
      for (const p of await mountPointsUnder(root)) await unmount(p).catch(() => undefined);
      await removeTree(root);
    }
  });

  for (const driver of drivers) {
    it(`${driver}: reopens cleanly after SIGKILL at random points, with no orphans after GC`, async () => {
      const root = await mkdtemp(join(tmpdir(), `bc-crash-${driver}-`));
      const kept: string[] = [];
      try {
        for (let round = 0; round < 10; round++) {
          const w = start(['churn', root, driver, String(round + 1)]);
          await w.waitFor(1 + (round % 3));
          // kill at a random moment inside the next step
          await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15)));
          await kill(w.child);
          kept.push(...w.output.filter((l) => l.startsWith('kept ')).map((l) => l.slice(5)));

          const b = await openEmbeddedBackend({ root, snapshotter: driver });
          try {
            assert.deepEqual(await mountPointsUnder(join(root, 'mounts')), [], 'no temp mounts left after open');
            assert.deepEqual(await readdir(join(root, 'mounts')), []);
            await b.garbageCollect();
            for (const id of kept) {
              // acknowledged work held by a live lease survived the kill and the GC
              assert.equal((await b.leases.list([`id==l-${id}`])).length, 1, `lease l-${id}`);
              assert.equal((await b.snapshotter.stat(`c-${id}`)).labels.marker, id);
            }
            const snaps = await collect(b.snapshotter.walk());
            const dirs = await readdir(join(root, 'snapshots'));
            assert.equal(dirs.length, snaps.length, `one dir per snapshot (round ${round})`);
            for (const s of snaps.filter((x) => x.kind === 'committed')) {
              const marker = s.labels.marker!;
              await withMount(b, await b.snapshotter.view(`check-${round}-${s.name}`, s.name), async (dir) => {
                assert.equal(await readFile(join(dir, `marker-${marker}`), 'utf8'), marker);
              });
              await b.snapshotter.remove(`check-${round}-${s.name}`);
            }
            const blobs = await collect(b.content.walk());
            assert.equal((await readdir(join(root, 'content/blobs/sha256'))).length, blobs.length);
            for (const blob of blobs) {
              const data = await readAll(b.content.read(blob.digest));
              assert.equal(`sha256:${createHash('sha256').update(data).digest('hex')}`, blob.digest);
            }
            for (const l of await b.leases.list()) {
              for (const r of await b.leases.listResources(l.id)) {
                if (r.type.startsWith('snapshots/') && r.id.startsWith('c-')) await b.snapshotter.stat(r.id);
                if (r.type === 'content') await b.content.info(r.id);
              }
            }
          } finally {
            await b.close();
          }
        }
      } finally {
        for (const p of await mountPointsUnder(root)) await unmount(p).catch(() => undefined);
        await removeTree(root);
      }
    });
  }
});
