/**
 * du over 300,000 records within a stated memory bound: the child runs with a 1.5 GiB heap limit
 * (V8 aborts the process past it) and must report every record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { syntheticSize } from '../support/synthetic.js';

const execFileP = promisify(execFile);
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'du-scale.js');
const RECORDS = 300_000;
const HEAP_LIMIT_MB = 1536;

test(`du streams ${RECORDS} records within a ${HEAP_LIMIT_MB} MiB heap`, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bc-du-scale-'));
  try {
    const { stdout } = await execFileP(
      process.execPath,
      [`--max-old-space-size=${HEAP_LIMIT_MB}`, fixture, dir, String(RECORDS)],
      { maxBuffer: 1 << 20 },
    );
    const r = JSON.parse(stdout) as { entries: number; bytes: number; duMs: number; peakRss: number };
    assert.equal(r.entries, RECORDS);
    let want = 0;
    for (let i = 0; i < RECORDS; i++) want += syntheticSize(i);
    assert.equal(r.bytes, want, 'every stored size reported once');
    console.log(`# du-scale: ${JSON.stringify(r)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
