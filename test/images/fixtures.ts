/**
 * Image archives for the image store's tests, written at test time: a real Debian rootfs layer
 * (debootstrap --variant=minbase from the mirror apt uses, cached under the test temp root; a tar of
 * a real system tree when the mirror is unreachable), a three-layer image whose top layer holds a
 * whiteout and an opaque directory (Python's tarfile), each wrapped as a `docker save` archive
 * (Python's tarfile) and as an OCI image layout (tarred by GNU tar) — and broken variants of them.
 *
 * Run as a script (`node fixtures.js DIR`), it writes DIR/real-oci.tar (the real layer, gzip, as an OCI
 * layout) and prints the layer and that archive as JSON: the images benchmark uses them.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** The test temp root's fixture cache (shared with the Debian benchmark). */
export const FIXTURE_CACHE = process.env.BENCH_CACHE ?? join(tmpdir(), 'buildcache-bench-cache');

/** The real rootfs layer the tests and the benchmark use. */
export interface RealLayer {
  /** What ran: debootstrap, or the fallback tar of a system tree. */
  readonly source: 'debootstrap' | 'system-tree';
  /** The tree the layer holds (the rootfs, or the system tree). */
  readonly tree: string;
  /** Entries left out of the layer (the rootfs's device nodes in /dev). */
  readonly exclude: readonly string[];
  readonly tarGz: string;
  readonly tar: string;
}

/** The Debian mirror apt uses (deb822 `.sources` or a `sources.list` line), else deb.debian.org. */
export async function aptMirror(): Promise<string> {
  const files = ['/etc/apt/sources.list'];
  for (const f of await readdir('/etc/apt/sources.list.d').catch(() => [])) if (/\.(sources|list)$/.test(f)) files.push(join('/etc/apt/sources.list.d', f));
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => '');
    const m = /^URIs:\s*(\S+\/debian)\s*$/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\s/m.exec(text);
    if (m) return m[1]!;
  }
  return 'http://deb.debian.org/debian';
}

async function debootstrap(rootfs: string, log: (line: string) => void): Promise<boolean> {
  const mirror = await aptMirror();
  const partial = `${rootfs}.partial`;
  await rm(partial, { recursive: true, force: true });
  try {
    await run('debootstrap', ['--variant=minbase', 'bookworm', partial, mirror], { maxBuffer: 64 << 20 });
  } catch (err) {
    log(`debootstrap from ${mirror} failed (${String(err).split('\n')[0]}); falling back to a system tree`);
    await rm(partial, { recursive: true, force: true });
    return false;
  }
  await rename(partial, rootfs);
  log(`debootstrap --variant=minbase bookworm from ${mirror} done`);
  return true;
}

/** Makes `out` (atomically) with `make(partialPath)` unless it exists. */
async function cached(out: string, make: (partial: string) => Promise<unknown>): Promise<string> {
  if (!(await exists(out))) {
    await make(`${out}.partial`);
    await rename(`${out}.partial`, out);
  }
  return out;
}

/** The real rootfs layer (tar and tar.gz), made once and cached; `log` says which source ran. */
export async function realLayer(log: (line: string) => void): Promise<RealLayer> {
  await mkdir(FIXTURE_CACHE, { recursive: true });
  const rootfs = join(FIXTURE_CACHE, 'debian-bookworm-minbase');
  let layer: Omit<RealLayer, 'tar'>;
  if ((await exists(rootfs)) || (await debootstrap(rootfs, log))) {
    layer = { source: 'debootstrap', tree: rootfs, exclude: ['./dev/*'], tarGz: `${rootfs}.tar.gz` };
    // the same layer the Debian benchmark makes: without /dev's nodes, as image layers are
    await cached(layer.tarGz, (p) => run('tar', ['--numeric-owner', '--xattrs', '--exclude=./dev/*', '-czf', p, '-C', rootfs, '.']));
  } else {
    layer = { source: 'system-tree', tree: '/usr/share/doc', exclude: [], tarGz: join(FIXTURE_CACHE, 'usr-share-doc.tar.gz') };
    await cached(layer.tarGz, (p) => run('tar', ['--numeric-owner', '-czf', p, '-C', layer.tree, '.']));
  }
  log(`real layer: ${layer.source} (${layer.tree}), ${layer.tarGz}`);
  const tar = layer.tarGz.replace(/\.gz$/, '');
  await cached(tar, (p) => run('sh', ['-c', `gzip -dc "$1" > "$2"`, 'sh', layer.tarGz, p]));
  return { ...layer, tar };
}

/** How to break an archive. */
export interface Breakage {
  /** Leave out the blob (OCI) or layer file (docker) of layer i. */
  readonly dropLayer?: number;
  /** docker: the manifest names one more layer file, which is not in the archive. */
  readonly extraLayer?: boolean;
  /** The config's diff_id of layer i is that of another tar. */
  readonly wrongDiffID?: number;
  /** docker: the bottom layer's legacy `json` names the top layer as its parent (a loop). */
  readonly parentCycle?: boolean;
  /** docker: the manifest lists the bottom layer twice. */
  readonly repeatLayer?: boolean;
}

/** What the archive writer is asked for. */
export interface ArchiveSpec {
  readonly format: 'docker' | 'oci';
  readonly out: string;
  readonly names: readonly string[];
  /** Layer files (plain or gzip tars), bottom first. */
  readonly layers: readonly string[];
  /** More `Env` entries of the image config, after PATH. */
  readonly env?: readonly string[];
  readonly break?: Breakage;
}

const WRITER = `
import gzip, hashlib, io, json, os, shutil, subprocess, sys, tarfile
spec = json.loads(sys.argv[1]); brk = spec.get('break') or {}
def sha_file(path, unzip):
    h = hashlib.sha256()
    with (gzip.open(path, 'rb') if unzip else open(path, 'rb')) as f:
        for chunk in iter(lambda: f.read(1 << 20), b''): h.update(chunk)
    return 'sha256:' + h.hexdigest()
def is_gz(path):
    with open(path, 'rb') as f: return f.read(2) == b'\\x1f\\x8b'
layers = [{'path': p, 'gz': is_gz(p)} for p in spec['layers']]
for l in layers:
    l['diff'] = sha_file(l['path'], l['gz']); l['digest'] = sha_file(l['path'], False); l['size'] = os.path.getsize(l['path'])
diff_ids = [l['diff'] for l in layers]
if 'wrongDiffID' in brk: diff_ids[brk['wrongDiffID']] = 'sha256:' + hashlib.sha256(b'another tar').hexdigest()
import platform\narch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(platform.machine(), platform.machine())\nconfig = json.dumps({'architecture': arch, 'os': 'linux', 'created': '2024-01-02T03:04:05Z',
    'config': {'Env': ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] + spec.get('env', []), 'Cmd': ['/bin/sh']},
    'rootfs': {'type': 'layers', 'diff_ids': diff_ids + (['sha256:' + '0' * 64] if brk.get('extraLayer') else [])},
    'history': [{'created_by': 'fixture layer %d' % i} for i in range(len(layers))]}).encode()
config_hex = hashlib.sha256(config).hexdigest()
def add_bytes(t, name, data):
    info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 1700000000; t.addfile(info, io.BytesIO(data))
if spec['format'] == 'docker':
    with tarfile.open(spec['out'], 'w', format=tarfile.PAX_FORMAT) as t:
        ids, parent = [], ''
        for l in layers:
            ids.append(hashlib.sha256((parent + ' ' + l['diff']).encode()).hexdigest()); parent = ids[-1]
        for i, l in enumerate(layers):
            p = ids[-1] if (brk.get('parentCycle') and i == 0) else (ids[i - 1] if i else None)
            add_bytes(t, ids[i] + '/VERSION', b'1.0')
            add_bytes(t, ids[i] + '/json', json.dumps({'id': ids[i], **({'parent': p} if p else {})}).encode())
            first = next(j for j, m in enumerate(layers) if m['diff'] == l['diff'])
            if brk.get('dropLayer') == i: pass
            elif first < i:  # as docker save writes a repeated layer: a symlink to the first copy
                info = tarfile.TarInfo(ids[i] + '/layer.tar'); info.type = tarfile.SYMTYPE; info.linkname = '../' + ids[first] + '/layer.tar'; t.addfile(info)
            else: t.add(l['path'], arcname=ids[i] + '/layer.tar')
        add_bytes(t, config_hex + '.json', config)
        paths = [i + '/layer.tar' for i in ids]
        if brk.get('extraLayer'): paths.append('deadbeef' * 8 + '/layer.tar')
        if brk.get('repeatLayer'): paths.insert(1, paths[0])
        add_bytes(t, 'manifest.json', json.dumps([{'Config': config_hex + '.json', 'RepoTags': spec['names'], 'Layers': paths}]).encode())
        repos = {}
        for n in spec['names']:
            r, _, tag = n.rpartition(':'); repos.setdefault(r, {})[tag] = ids[-1]
        add_bytes(t, 'repositories', json.dumps(repos).encode())
else:
    d = spec['out'] + '.layout'; shutil.rmtree(d, ignore_errors=True); os.makedirs(d + '/blobs/sha256')
    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        with open(d + '/blobs/sha256/' + h, 'wb') as f: f.write(data)
        return {'digest': 'sha256:' + h, 'size': len(data)}
    for i, l in enumerate(layers):
        if brk.get('dropLayer') == i: continue
        try: os.link(l['path'], d + '/blobs/sha256/' + l['digest'][7:])
        except OSError: shutil.copyfile(l['path'], d + '/blobs/sha256/' + l['digest'][7:])
    manifest = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', **blob(config)},
        'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar' + ('+gzip' if l['gz'] else ''), 'digest': l['digest'], 'size': l['size']} for l in layers]}).encode()
    m = {'mediaType': 'application/vnd.oci.image.manifest.v1+json', **blob(manifest)}
    index = {'schemaVersion': 2, 'manifests': [{**m, 'annotations': {'io.containerd.image.name': n, 'org.opencontainers.image.ref.name': n.rpartition(':')[2]}} for n in spec['names']] or [m]}
    with open(d + '/index.json', 'w') as f: json.dump(index, f)
    with open(d + '/oci-layout', 'w') as f: json.dump({'imageLayoutVersion': '1.0.0'}, f)
    subprocess.run(['tar', '-C', d, '-cf', spec['out'], '.'], check=True)
    shutil.rmtree(d)
print(json.dumps({'id': 'sha256:' + config_hex, 'diffIDs': [l['diff'] for l in layers]}))
`;

/** Writes an image archive; returns the image ID (config digest) and the layers' diff IDs. */
export async function writeArchive(spec: ArchiveSpec): Promise<{ id: string; diffIDs: string[] }> {
  const { stdout } = await run('python3', ['-c', WRITER, JSON.stringify(spec)], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as { id: string; diffIDs: string[] };
}

const LAYERS_PY = `
import io, sys, tarfile
out = sys.argv[1]
def layer(path, entries):
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as t:
        for name, body in entries:
            info = tarfile.TarInfo(name); info.mtime = 1700000000
            if body is None:
                info.type = tarfile.DIRTYPE; info.mode = 0o755; t.addfile(info)
            else:
                info.size = len(body); info.mode = 0o644; t.addfile(info, io.BytesIO(body))
layer(out + '/l1.tar', [('etc', None), ('etc/os-release', b'ID=fixture\\n'), ('etc/gone', b'removed above\\n'),
    ('opt', None), ('opt/old-a', b'a\\n'), ('opt/old-b', b'b\\n'), ('keep.txt', b'base\\n')])
layer(out + '/l2.tar', [('etc', None), ('etc/os-release', b'ID=fixture\\nVERSION=2\\n'), ('bin', None), ('bin/tool', b'#!/bin/sh\\necho tool\\n')])
layer(out + '/l3.tar', [('etc', None), ('etc/.wh.gone', b''), ('opt', None), ('opt/.wh..wh..opq', b''), ('opt/new', b'new\\n')])
`;

/** The three layer tars of the multi-layer image (the third removes etc/gone and replaces opt/), and the tree they make. */
export async function threeLayers(dir: string): Promise<{ layers: string[]; expected: Record<string, string> }> {
  await mkdir(dir, { recursive: true });
  await run('python3', ['-c', LAYERS_PY, dir]);
  await run('gzip', ['-k', '-1', join(dir, 'l2.tar')]);
  return {
    layers: [join(dir, 'l1.tar'), join(dir, 'l2.tar.gz'), join(dir, 'l3.tar')],
    expected: {
      'bin/tool': '#!/bin/sh\necho tool\n', 'etc/os-release': 'ID=fixture\nVERSION=2\n', 'keep.txt': 'base\n', 'opt/new': 'new\n',
    },
  };
}

/** The JSON value `make` gives, made once and kept in the fixture cache as `name`. */
export async function cachedJSON<T>(name: string, make: () => Promise<T>): Promise<T> {
  const path = join(FIXTURE_CACHE, name);
  await cached(path, async (partial) => writeFile(partial, JSON.stringify(await make())));
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

/** `writeArchive(spec)` made once and kept in the fixture cache as `name`. */
export async function cachedArchive(name: string, spec: Omit<ArchiveSpec, 'out'>): Promise<{ path: string; id: string; diffIDs: string[] }> {
  const path = join(FIXTURE_CACHE, name);
  const result = await cachedJSON(`${name}.json`, async () => {
    const r = await writeArchive({ ...spec, out: `${path}.partial` });
    await rename(`${path}.partial`, path);
    return r;
  });
  return { path, ...result };
}

/** A file that is not a tar. */
export async function notATar(dir: string): Promise<string> {
  const path = join(dir, 'not-a-tar.bin');
  await writeFile(path, Buffer.from('this is a text file, not a tar archive\n'.repeat(40)));
  return path;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const layer = await realLayer((line) => process.stderr.write(`${line}\n`));
  const archive = join(process.argv[2]!, 'real-oci.tar');
  await writeArchive({ format: 'oci', out: archive, names: ['real:latest'], layers: [layer.tarGz] });
  process.stdout.write(`${JSON.stringify({ ...layer, archive })}\n`);
}
