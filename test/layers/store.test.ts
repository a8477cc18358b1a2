/**
 * The layer store on every backend: registration from real tars (GNU tar, Python's tarfile, a real
 * system tree; plain, gzip, zstd), exact re-export, sparse files (GNU tar `--sparse`, every format)
 * with their holes, reference counts and the release cascade, the depth limit, and bad input
 * (corrupt sparse maps among it) that must change nothing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { CacheManager } from '@buildcache/cache';
import { ErrCorruptLayer, ErrDigestMismatch, ErrMaxDepthExceeded, ErrNotFound, type BuildcacheError } from '@buildcache/errdefs';
import { HOLDER, LayerStore, MAX_DEPTH, type Layer } from '@buildcache/layers';
import { BACKENDS, type TestBackend } from '../support/backends.js';
import { collect, makeSparseTree, makeTars, sha, sparseTars, systemTreeTar } from './fixtures.js';

const run = promisify(execFile);

/** A tar holding one file `name` with `body` (GNU tar). */
async function oneFileTar(dir: string, name: string, body: string): Promise<Buffer> {
  const src = join(dir, `src-${name}`);
  await rm(src, { recursive: true, force: true });
  await run('mkdir', ['-p', src]);
  await writeFile(join(src, name), body);
  const out = join(dir, `${name}.tar`);
  await run('tar', ['-C', src, '-cf', out, name]);
  return readFile(out);
}

let fixtures: string;
let tars: Record<string, string>;
let system: { path: string; tree: string };
let sparse: Record<string, string>;
/** Hand-corrupted sparse tars: what is wrong with the map → the tar. */
let badSparse: Array<{ what: string; tar: Buffer; message: RegExp }>;

/** `tar` with the one occurrence of `from` replaced by `to` (same length: sizes and records stay valid). */
function patched(tar: Buffer, from: string, to: string): Buffer {
  assert.equal(from.length, to.length);
  const at = tar.indexOf(from, 0, 'latin1');
  assert.ok(at >= 0 && tar.indexOf(from, at + 1, 'latin1') < 0, `${JSON.stringify(from)} occurs once`);
  const out = Buffer.from(tar);
  out.write(to, at, 'latin1');
  return out;
}

/** An old GNU sparse tar (first block its `S` header) with numeric header fields rewritten and the checksum redone. */
function patchedGnu(tar: Buffer, fields: Array<[offset: number, value: number]>): Buffer {
  const out = Buffer.from(tar);
  assert.equal(String.fromCharCode(out[156]!), 'S');
  for (const [off, value] of fields) out.write(value.toString(8).padStart(11, '0') + '\0', off, 'latin1');
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[i]!;
  out.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return out;
}

/** GNU tar `--sparse` tars of one 64 MiB file with data at 0, 10 MiB and 40 MiB, corrupted by hand. */
async function corruptSparseTars(dir: string): Promise<typeof badSparse> {
  const tree = join(dir, 'bad-sparse-tree');
  await makeSparseTree(tree);
  const one = async (args: string[]): Promise<Buffer> => {
    const out = join(dir, `bad-sparse-${args.join('')}.tar`);
    await run('tar', ['-C', tree, ...args, '--sparse', '-cf', out, 'big-holes.img']);
    return readFile(out);
  };
  const gnu = await one(['--format=gnu']);
  const v00 = await one(['--format=posix', '--sparse-version=0.0']);
  const v01 = await one(['--format=posix', '--sparse-version=0.1']);
  const v10 = await one(['--format=posix']);
  // old GNU header: 4 entries of (offset, length) from byte 386, the real size at 483
  return [
    { what: 'GNU: second segment out of order (overlaps the first)', tar: patchedGnu(gnu, [[386 + 24, 0]]), message: /overlaps/ },
    { what: 'GNU: segments beyond the real size', tar: patchedGnu(gnu, [[483, 1 << 20]]), message: /beyond the file's size/ },
    { what: 'GNU: map holds more data than the entry', tar: patchedGnu(gnu, [[386 + 12, 8192]]), message: /sparse map holds/ },
    { what: 'PAX 0.0: real size below the map', tar: patched(v00, 'GNU.sparse.size=67108864', 'GNU.sparse.size=00000001'), message: /beyond the file's size/ },
    { what: 'PAX 0.1: out of order', tar: patched(v01, ',41943040,', ',01943040,'), message: /overlaps/ },
    { what: 'PAX 1.0: map larger than the entry', tar: patched(v10, '4\n0\n4096\n10485760\n', '9\n0\n4096\n10485760\n'), message: /sparse map larger than the entry/ },
    { what: 'PAX 1.0: not a number', tar: patched(v10, '4\n0\n4096\n10485760\n', '4\n0\n40x6\n10485760\n'), message: /invalid map value/ },
  ];
}

before(async () => {
  fixtures = await mkdtemp(join(tmpdir(), 'layers-fixtures-'));
  tars = await makeTars(fixtures);
  system = await systemTreeTar(fixtures);
  sparse = await sparseTars(fixtures);
  badSparse = await corruptSparseTars(fixtures);
});
after(async () => {
  await rm(fixtures, { recursive: true, force: true });
});

for (const kind of BACKENDS) {
  describe(`layer store on ${kind.name}`, () => {
    let tb: TestBackend;
    let cache: CacheManager;
    let store: LayerStore;
    const open = async (): Promise<void> => {
      cache = await CacheManager.open({ root: join(tb.dir, 'cache'), backend: tb.backend, logger: pino({ level: 'silent' }) });
      store = await LayerStore.open({ cache, root: join(tb.dir, 'layers') });
    };
    before(async () => {
      tb = await kind.open();
      await open();
    });
    after(async () => {
      await store.close();
      await cache.close();
      await tb.close();
    });
    const records = async (): Promise<number> => {
      let n = 0;
      for await (const u of cache.diskUsage()) if (u.id) n++;
      return n;
    };

    test('every fixture tar and a real system tree re-export byte for byte (sha256 = diffID), plain, gzip and zstd', async () => {
      const names = [...Object.keys(tars), 'system'];
      for (const name of names) {
        const path = name === 'system' ? system.path : tars[name]!;
        const raw = await readFile(path);
        for (const comp of ['none', 'gzip', 'zstd'] as const) {
          if (comp !== 'none' && name !== 'python-pax') continue;
          const blobPath = comp === 'none' ? path : `${path}.${comp === 'gzip' ? 'gz' : 'zst'}`;
          if (comp === 'gzip') await run('sh', ['-c', `gzip -c '${path}' > '${blobPath}'`]);
          if (comp === 'zstd') await run('zstd', ['-q', '-f', path, '-o', blobPath]);
          const blob = await readFile(blobPath);
          const descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(blob), size: blob.length };
          const layer = await store.register(createReadStream(blobPath), undefined, { descriptor });
          assert.equal(layer.diffID, sha(raw), `${name}/${comp}: diffID is the sha256 of the uncompressed tar`);
          assert.equal(layer.chainID, layer.diffID, 'a base layer: chainID = diffID');
          const back = await collect(layer.tarStream());
          assert.equal(back.length, raw.length, `${name}/${comp}: same length`);
          assert.ok(back.equals(raw), `${name} (${system.tree} for system)/${comp}: re-export equals the original tar`);
          await store.release(layer);
        }
      }
      assert.equal(store.list().length, 0);
      assert.equal(await records(), 0, 'released layers leave no record');
    });

    test('any chunking re-exports byte for byte: header blocks split across chunks, a 300 KB PAX record and 600 KB after the end-of-archive', async () => {
      // A regression guard, not a proof of a fix: the tar-split capture before its in-place rewrite
      // (cd61482) re-exported these byte for byte too; this keeps the rewrite's chunk-boundary cases exact.
      const out = join(fixtures, 'odd.tar');
      const py = [
        'import io, sys, tarfile',
        'with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:',
        '    for i, n in enumerate([0, 1, 511, 512, 513, 70000]):',
        '        info = tarfile.TarInfo(f"d/f{i}")',
        '        info.size = n',
        '        if i == 2: info.pax_headers = {"comment": "c" * 300000}',
        '        t.addfile(info, io.BytesIO(bytes([i + 65]) * n))',
      ].join('\n');
      await run('python3', ['-c', py, out]);
      const raw = Buffer.concat([await readFile(out), Buffer.alloc(600_000, 7)]);
      const pieces: Buffer[] = [];
      for (let off = 0, k = 0; off < raw.length; k++) {
        const n = Math.min(raw.length - off, [1, 7, 511, 513, 100_003][k % 5]!);
        pieces.push(raw.subarray(off, off + n));
        off += n;
      }
      const layer = await store.register(pieces);
      assert.equal(layer.diffID, sha(raw));
      assert.ok((await collect(layer.tarStream())).equals(raw), 're-export equals the original, trailing bytes included');
      await store.release(layer);
    });

    test('same chain ID twice: one layer, two references; the last release removes it', async () => {
      const tar = await oneFileTar(tb.dir, 'twice', 'x');
      const a = await store.register([tar]);
      const b = await store.register([tar]);
      assert.equal(a.chainID, b.chainID);
      assert.equal(store.list().length, 1);
      assert.equal(store.list()[0]!.refs, 2);
      assert.equal(await records(), 1, 'the duplicate registration left no record');
      assert.deepEqual(await store.release(a), []);
      const removed = await store.release(b);
      assert.deepEqual(removed.map((r) => r.chainID), [a.chainID]);
      assert.equal(await records(), 0);
      await assert.rejects(store.get(a.chainID), ErrNotFound);
    });

    test('a child holds its parent; releasing the child last cascades, child first; references survive a reopen', async () => {
      const base = await store.register([await oneFileTar(tb.dir, 'base', 'b')]);
      const child = await store.register([await oneFileTar(tb.dir, 'child', 'c')], base.chainID);
      const expected = sha(Buffer.from(`${base.chainID} ${child.diffID}`));
      assert.equal(child.chainID, expected, 'chainID = sha256(parent chainID + " " + diffID)');
      assert.equal(child.parent, base.chainID);
      assert.deepEqual(await store.release(base), [], 'the child keeps its parent');
      await store.close();
      await cache.close();
      await open();
      const again = await store.get(child.chainID);
      assert.deepEqual(await store.release(child), [], 'the reference taken after reopen remains');
      const removed = await store.release(again);
      assert.deepEqual(removed.map((r) => r.chainID), [child.chainID, base.chainID]);
      assert.equal(await records(), 0);
      assert.deepEqual(await readdir(join(tb.dir, 'layers', 'layers')), []);
    });

    test('bad input: not a tar, truncated, size lies, digest differs — typed error naming the layer, nothing registered, parent unchanged', async () => {
      const parent = await store.register([await oneFileTar(tb.dir, 'parent', 'p')]);
      const good = await readFile(tars['python-pax']!);
      const lying = Buffer.from(good);
      // Claim a larger size for the first entry with a body: the stream then ends early.
      const bodyHeader = good.indexOf(Buffer.from('small.txt'));
      assert.ok(bodyHeader >= 0);
      const hdr = Math.floor(bodyHeader / 512) * 512;
      lying.write('77777777777\0', hdr + 124, 'latin1');
      let sum = 0;
      lying.write('        ', hdr + 148, 'latin1');
      for (let i = 0; i < 512; i++) sum += lying[hdr + i]!;
      lying.write(sum.toString(8).padStart(6, '0') + '\0 ', hdr + 148, 'latin1');
      const before = await records();
      const cases: Array<[string, Buffer, (e: unknown) => boolean, object?]> = [
        ['not a tar', Buffer.from('this is not a tar archive at all, only text '.repeat(40)), (e) => e instanceof ErrCorruptLayer],
        ['truncated', good.subarray(0, 2048 + 100), (e) => e instanceof ErrCorruptLayer],
        ['size lies', lying, (e) => e instanceof ErrCorruptLayer],
        ['digest differs', good, (e) => e instanceof ErrDigestMismatch,
          { descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(Buffer.from('other')), size: good.length } }],
      ];
      for (const [what, data, isType, opts] of cases) {
        const err = await store.register([data], parent.chainID, opts).then(() => undefined, (e: unknown) => e);
        assert.ok(err && isType(err), `${what}: typed error, got ${String(err)}`);
        const d = (err as BuildcacheError).details;
        assert.ok(typeof d['layer'] === 'string' && (err as Error).message.includes(d['layer']), `${what}: the error names the layer`);
        assert.equal(store.list().length, 1, `${what}: nothing registered`);
        assert.equal(store.list()[0]!.refs, 1, `${what}: parent references unchanged`);
        assert.equal(await records(), before, `${what}: no record (snapshot, lease) left`);
        assert.deepEqual(await readdir(join(tb.dir, 'layers', 'tmp')), [], `${what}: no work files left`);
      }
      assert.deepEqual((await store.release(parent)).length, 1);
    });

    test('open finishes what a crash interrupted: a registration in progress and a deletion in progress leave no layer, record or work file', async () => {
      const before = await records();
      // A registration and a read-write layer creation cut off after their records existed (found by
      // the token in their descriptions), one of them already held by the store.
      const half = await cache.new(undefined, { description: 'layer cut off [layers:00aa11bb22cc33dd]', retain: true });
      await mkdir(join(tb.dir, 'layers', 'tmp', '00aa11bb22cc33dd.reg'));
      await writeFile(join(tb.dir, 'layers', 'tmp', '00aa11bb22cc33dd.reg', 'tar-split.gz'), 'partial');
      await half.release();
      const rw = await cache.new(undefined, { description: 'read-write layer x [layers:44ee55ff66aa77bb]', retain: true });
      await cache.setHeld(rw.id, HOLDER, true);
      await mkdir(join(tb.dir, 'layers', 'tmp', '44ee55ff66aa77bb.rw'));
      await rw.release();
      // A deletion cut off after its durable step (the rename into tmp).
      const doomed = await store.register([await oneFileTar(tb.dir, 'doomed', 'd')]);
      const meta = store.list()[0]!;
      await rename(join(tb.dir, 'layers', 'layers', meta.chainID.slice(7)), join(tb.dir, 'layers', 'tmp', `${meta.token!}.del`));
      assert.ok(doomed);
      await store.close();
      await cache.close();
      await open();
      assert.deepEqual(store.list(), []);
      assert.equal(await records(), before);
      assert.deepEqual(await readdir(join(tb.dir, 'layers', 'tmp')), []);
    });

    test('sparse files (GNU tar --sparse: old GNU, PAX 1.0, 0.0, 0.1) apply with their holes and re-export byte for byte', async () => {
      const src = join(fixtures, 'sparse-tree');
      for (const [name, path] of Object.entries(sparse)) {
        const raw = await readFile(path);
        const layer = await store.register(createReadStream(path));
        assert.equal(layer.diffID, sha(raw), `${name}: diffID`);
        const back = await collect(layer.tarStream());
        assert.equal(sha(back), layer.diffID, `${name}: re-export hashes to the diffID`);
        const ref = await cache.get(layer.meta.recordId);
        const m = await ref.mount({ readonly: true });
        try {
          for (const file of await readdir(src)) {
            const [got, want] = [join(m.target, file), join(src, file)];
            await run('cmp', [got, want]); // same content (fails with a non-zero exit)
            const st = await stat(got);
            assert.equal(st.size, (await stat(want)).size, `${name}: ${file} size`);
            if (file.endsWith('.img')) assert.ok(st.blocks * 512 < st.size / 4, `${name}: ${file} keeps its holes (${st.blocks * 512} bytes allocated of ${st.size})`);
          }
        } finally {
          await m.unmount();
          await ref.release();
        }
        await store.release(layer);
      }
      assert.equal(await records(), 0);
    });

    test('corrupt sparse maps (out of order, beyond the size, more data than stored, larger than the entry) are ErrCorruptLayer, nothing registered', async () => {
      const before = await records();
      for (const bad of badSparse) {
        await assert.rejects(store.register([bad.tar]), (e: unknown) => {
          assert.ok(e instanceof ErrCorruptLayer, `${bad.what}: ${String(e)}`);
          assert.match(e.message, bad.message, bad.what);
          assert.match(e.message, /big-holes\.img/, `${bad.what}: names the entry`);
          return true;
        });
        assert.equal(store.list().length, 0);
        assert.equal(await records(), before);
      }
    });

    test("the chain depth is limited (Docker's 125 by default; a store opened with 3 here): ErrMaxDepthExceeded, nothing registered", async () => {
      assert.equal(MAX_DEPTH, 125);
      const shallow = await LayerStore.open({ cache, root: join(tb.dir, 'shallow'), maxDepth: 3 });
      let top: Layer | undefined;
      const held: Layer[] = [];
      for (let i = 0; i < 3; i++) {
        top = await shallow.register([await oneFileTar(tb.dir, `l${i}`, String(i))], top?.chainID);
        held.push(top);
      }
      const before = await records();
      await assert.rejects(shallow.register([await oneFileTar(tb.dir, 'deep', 'x')], top!.chainID), ErrMaxDepthExceeded);
      assert.equal(shallow.list().length, 3);
      assert.equal(await records(), before);
      for (const l of held.reverse()) await shallow.release(l);
      assert.equal(shallow.list().length, 0);
      await shallow.close();
    });
  });
}
