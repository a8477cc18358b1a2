/**
 * A build context of 100,000 files (100 directories of 1,000): `COPY . /data/` succeeds in a CLI
 * process whose peak RSS (GNU time's %M) stays bounded — no file's bytes, and no whole tree, held
 * in memory. `BC_LARGE_CONTEXT_FILES` lowers the count for a quick local run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { CLI } from './fixtures.js';

const run = promisify(execFile);
const FILES = Number(process.env['BC_LARGE_CONTEXT_FILES'] ?? 100_000);
/** Peak RSS allowed for the whole build process, in KiB. */
const RSS_LIMIT_KB = 512 * 1024;

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bc-frontend-large-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test(`a context of ${FILES} files builds with bounded memory`, async () => {
  const ctx = join(tmp, 'ctx');
  const limit = pLimit(64);
  const perDir = 1000;
  const writes: Promise<void>[] = [];
  for (let d = 0; d * perDir < FILES; d++) {
    await mkdir(join(ctx, `d${d}`), { recursive: true });
    for (let f = 0; f < perDir && d * perDir + f < FILES; f++) writes.push(limit(() => writeFile(join(ctx, `d${d}`, `f${f}.txt`), `${d}-${f}\n`)));
  }
  await Promise.all(writes);
  await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY . /data/\n');
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, CLI, '--root', join(tmp, 'root'), 'build', '--progress', 'plain', ctx], {
    maxBuffer: 16 << 20,
  });
  assert.match(stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.match(stderr, /#2 \[1\/1\] COPY \. \/data\/\n#2 DONE/);
  const rss = Number(/maxrss=(\d+)/.exec(stderr)?.[1]);
  assert.ok(rss > 0 && rss < RSS_LIMIT_KB, `peak RSS ${rss} KiB over ${RSS_LIMIT_KB} KiB`);
});
