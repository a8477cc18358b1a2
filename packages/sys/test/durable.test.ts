/**
 * writeFileWhole: a file appears at its name only complete — on success it holds every chunk, on a
 * failure (the source throws mid-way, or the file cannot be written) the name keeps what it held
 * before and no partial file is left; a killed writer leaves the name as it was and a partial file
 * that removeStalePartials drops (and only that one: a live writer's partial stays).
 * (That the fsyncs make it survive a power loss cannot be observed without one.)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { removeStalePartials, writeFileWhole } from '../src/index.js';

async function* chunks(parts: readonly string[], failAfter?: number): AsyncGenerator<Buffer> {
  for (const [i, p] of parts.entries()) {
    if (i === failAfter) throw new Error('source failed mid-way');
    yield Buffer.from(p);
  }
}

describe('writeFileWhole', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bc-sys-durable-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes every chunk under the name and leaves nothing beside it', async () => {
    const file = join(dir, 'out.tar');
    await writeFileWhole(file, chunks(['a'.repeat(70_000), 'b', 'c'.repeat(3)]));
    assert.equal(await readFile(file, 'utf8'), `${'a'.repeat(70_000)}bccc`);
    await writeFileWhole(file, chunks(['replaced']));
    assert.equal(await readFile(file, 'utf8'), 'replaced');
    assert.deepEqual(await readdir(dir), ['out.tar']);
  });

  it('a source that fails mid-way leaves the name as it was and no partial file', async () => {
    const sub = await mkdtemp(join(dir, 'fail-'));
    const file = join(sub, 'kept.tar');
    await writeFile(file, 'previous');
    await assert.rejects(writeFileWhole(file, chunks(['x'.repeat(100_000), 'y'], 1)), /source failed mid-way/);
    assert.equal(await readFile(file, 'utf8'), 'previous');
    await assert.rejects(writeFileWhole(join(sub, 'new.tar'), chunks(['x', 'y'], 1)), /source failed mid-way/);
    assert.deepEqual(await readdir(sub), ['kept.tar']);
  });

  it('concurrent writes of one path each land whole (the last to finish wins)', async () => {
    const sub = await mkdtemp(join(dir, 'race-'));
    const file = join(sub, 'blob');
    const big = (c: string): string[] => Array.from({ length: 16 }, () => c.repeat(64 * 1024));
    await Promise.all(['a', 'b', 'c'].map((c) => writeFileWhole(file, chunks(big(c)))));
    const got = await readFile(file, 'utf8');
    assert.equal(got.length, 16 * 64 * 1024);
    assert.ok(['a', 'b', 'c'].some((c) => got === c.repeat(got.length)), 'one writer\'s bytes, not a mix');
    assert.deepEqual(await readdir(sub), ['blob']);
  });

  it('a file that cannot be written is the fs error, and nothing appears', async () => {
    const file = join(dir, 'missing-dir', 'out.tar');
    await assert.rejects(writeFileWhole(file, chunks(['x'])), { code: 'ENOENT' });
    await assert.rejects(readdir(join(dir, 'missing-dir')), { code: 'ENOENT' });
  });

  it('a writer killed mid-way leaves the old content; removeStalePartials drops its partial file, not a live one', async () => {
    const sub = await mkdtemp(join(dir, 'kill-'));
    const file = join(sub, 'index.json');
    await writeFile(file, 'previous');
    const sys = fileURLToPath(new URL('../src/index.js', import.meta.url));
    // The child writes one 64 KiB chunk, then its source never ends: it is killed mid-write.
    const script = `import { writeFileWhole } from ${JSON.stringify(sys)};
      async function* src() { yield Buffer.alloc(65536, 120); await new Promise(() => setInterval(() => {}, 1000)); }
      await writeFileWhole(${JSON.stringify(file)}, src());`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    const exited = new Promise((res) => child.on('exit', res));
    try {
      const partial = `${file}.partial-${child.pid}-1`;
      for (;;) {
        assert.equal(child.exitCode, null, 'the writer runs until killed');
        if ((await stat(partial).catch(() => undefined))?.size === 65536) break;
        await new Promise((res) => setTimeout(res, 20));
      }
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    assert.equal(await readFile(file, 'utf8'), 'previous');
    const live = `index.json.partial-${process.pid}-999999`;
    await writeFile(join(sub, live), 'a live writer');
    assert.deepEqual(await removeStalePartials(sub), [`index.json.partial-${child.pid}-1`]);
    assert.deepEqual((await readdir(sub)).sort(), ['index.json', live]);
  });
});
