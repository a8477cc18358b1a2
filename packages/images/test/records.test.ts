/**
 * The image store's record files: concurrent writers of one record (two store calls, or two
 * processes sharing the store) each land whole, and reading the records drops what a killed writer
 * left beside them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readAll, writeJSON } from '../src/records.js';

describe('image record files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bc-images-records-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('concurrent writers of one record all succeed and the record is one of theirs, whole', async () => {
    const sub = await mkdtemp(join(dir, 'race-'));
    const values = Array.from({ length: 16 }, (_, i) => ({ id: `sha256:${i}`, names: Array.from({ length: 2000 }, () => `writer-${i}`) }));
    await Promise.all(values.map((v) => writeJSON(sub, 'abc.json', v)));
    const [got] = await readAll<(typeof values)[number]>(sub);
    assert.ok(values.some((v) => JSON.stringify(v) === JSON.stringify(got)), 'one writer\'s record');
    assert.deepEqual(await readdir(sub), ['abc.json']);
  });

  it('reading the records removes the partial file of a writer that is gone', async () => {
    const sub = await mkdtemp(join(dir, 'stale-'));
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((res) => gone.on('exit', res));
    await writeJSON(sub, 'abc.json', { id: 'kept' });
    await writeFile(join(sub, `abc.json.partial-${gone.pid}-1`), '{"id":"half');
    assert.deepEqual(await readAll(sub), [{ id: 'kept' }]);
    assert.deepEqual(await readdir(sub), ['abc.json']);
  });
});
