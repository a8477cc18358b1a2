/**
 * Errors when the cache cannot be opened (issue 11, items 10 and 11): one line that names the
 * socket or store, says what is wrong and what to do, and an exit code by kind.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { createServer as createHttp2Server } from 'node:http2';
import { chmod, cp, readdir, readFile, truncate, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { lines, run, tempDir } from './helpers.js';

const NOBODY = 65534;

function listen(server: Server | ReturnType<typeof createHttp2Server>, path: string): Promise<void> {
  return new Promise((res) => server.listen(path, res));
}

const servers: { close(): unknown }[] = [];
after(() => {
  for (const s of servers.splice(0)) s.close();
});

/** One line, exit `code`, and the line matches every pattern. */
function assertError(r: { code: number | null; stderr: string }, code: number, ...patterns: RegExp[]): void {
  assert.equal(r.code, code, r.stderr);
  assert.equal(lines(r.stderr).length, 1, `one line: ${r.stderr}`);
  for (const re of patterns) assert.match(r.stderr, re);
}

describe('connecting to containerd', () => {
  test('a socket that accepts and never answers: --timeout bounds the wait; the message names the socket', async () => {
    const dir = await tempDir();
    const sock = join(dir, 'silent.sock');
    const server = createServer((c) => c.on('error', () => undefined));
    servers.push(server);
    await listen(server, sock);
    const r = await run(['--root', dir, '--containerd', sock, '--timeout', '1s', 'du']);
    assertError(r, 3, new RegExp(`${sock} did not answer as containerd within 1s; is that containerd's socket`));
    assert.match((await run(['--help'])).stdout, /--timeout D .*\(default: 10s\)/);
  });

  test('a socket that is not containerd says so', async () => {
    const dir = await tempDir();
    const http1 = join(dir, 'http1.sock');
    const s1 = createServer((c) => {
      c.on('error', () => undefined);
      c.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    const h2 = join(dir, 'h2.sock');
    const s2 = createHttp2Server();
    s2.on('stream', (stream) => stream.respond({ ':status': 404 }, { endStream: true }));
    servers.push(s1, s2);
    await listen(s1, http1);
    await listen(s2, h2);
    assertError(await run(['--root', dir, '--containerd', http1, 'du']), 3, new RegExp(`${http1} is not containerd: it does not speak gRPC`));
    assertError(await run(['--root', dir, '--containerd', h2, 'du']), 3, new RegExp(`${h2} answered, but not as containerd`));
  });

  test('EACCES on the socket says permission denied, not "is the daemon running"', async () => {
    const dir = await tempDir();
    await chmod(dir, 0o755);
    const sock = join(dir, 'private.sock');
    const server = createServer((c) => c.on('error', () => undefined));
    servers.push(server);
    await listen(server, sock);
    await chmod(sock, 0o600);
    const r = await run(['--root', join(dir, 'root'), '--containerd', sock, 'du'], { uid: NOBODY, cwd: '/' });
    assertError(r, 4, new RegExp(`containerd socket ${sock}: permission denied`));
    assert.doesNotMatch(r.stderr, /daemon running/);
  });
});

describe('a damaged or foreign store', () => {
  /** A cache root with records, whose stores have been written out to table files. */
  let template: string | undefined;
  async function cacheRoot(): Promise<string> {
    if (!template) {
      template = await tempDir();
      assert.equal((await run(['--root', template, '--snapshotter', 'native', 'demo'])).code, 0);
      assert.equal((await run(['--root', template, 'du'])).code, 0);
    }
    const copy = join(await tempDir(), 'cache');
    await cp(template, copy, { recursive: true });
    return copy;
  }
  const tables = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => f.endsWith('.ldb')).map((f) => join(dir, f));

  test('a corrupt embedded backend store names its path, the cause and what to do', async () => {
    const root = await cacheRoot();
    const meta = join(root, 'backend', 'meta');
    await writeFile(join(meta, 'CURRENT'), 'garbage\n');
    assertError(
      await run(['--root', root, 'du']),
      3,
      new RegExp(`embedded backend store ${meta} is damaged: LevelDB reports`),
      new RegExp(`Move the backend directory ${join(root, 'backend')} aside`),
    );
  });

  test('a truncated table file is reported the same way, in the backend store and in the metadata store', async () => {
    const root = await cacheRoot();
    const meta = join(root, 'backend', 'meta');
    const backendTables = await tables(meta);
    assert.ok(backendTables.length > 0, 'the backend store has table files');
    for (const t of backendTables) await truncate(t, 100);
    assertError(await run(['--root', root, 'du']), 3, new RegExp(`embedded backend store ${meta} is damaged: LevelDB reports .*\\.ldb`), /Move the backend directory/);

    const other = await cacheRoot();
    const metadata = join(other, 'metadata');
    for (const t of await tables(metadata)) await truncate(t, 100);
    assertError(await run(['--root', other, 'du']), 3, new RegExp(`metadata: ${metadata} is not a usable metadata store: LevelDB reports damage`), /Move the directory aside/);
  });

  test('a foreign LevelDB in the backend store is refused', async () => {
    const root = await cacheRoot();
    const meta = join(root, 'backend', 'meta');
    await rm(meta, { recursive: true });
    await cp(join(root, 'metadata'), meta, { recursive: true });
    assertError(await run(['--root', root, 'du']), 3, new RegExp(`embedded backend store ${meta} is a LevelDB database of something else`));
  });

  test('a stray file in an empty backend store directory is refused, not turned into a database', async () => {
    const root = await tempDir();
    const meta = join(root, 'backend', 'meta');
    await mkdir(meta, { recursive: true });
    await writeFile(join(meta, 'notes.txt'), 'mine\n');
    assertError(await run(['--root', root, 'du']), 3, new RegExp(`embedded backend store ${meta} is a non-empty directory without a database \\(found notes.txt\\)`));
    assert.deepEqual(await readdir(meta), ['notes.txt']);
    assert.equal(await readFile(join(meta, 'notes.txt'), 'utf8'), 'mine\n');
  });
});
