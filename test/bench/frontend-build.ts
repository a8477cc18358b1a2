/**
 * Benchmark of `buildcache build` (issue 15): a 5-step Dockerfile (COPY a rootfs, WORKDIR, COPY
 * sources, two RUN steps with runc) built first, rebuilt fully cached (goal < 0.5 s), and rebuilt
 * after one file changed (that COPY and the two RUNs rerun) — in process, on the embedded backend;
 * plus the fully cached rebuild as a whole `buildcache build` process. Prints one JSON object.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { openCache } from '@buildcache/cache';
import { Frontend } from '@buildcache/frontend';
import { CLI, hostRootfs } from '../frontend/fixtures.js';

const run = promisify(execFile);
const DOCKERFILE = `FROM scratch
COPY rootfs/ /
WORKDIR /app
COPY src/ ./src/
RUN cat src/*.txt > all.txt
RUN ls -l /app > listing.txt
`;

const seconds = (ms: number): number => Math.round(ms) / 1000;

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'bc-bench-build-'));
  try {
    const ctx = join(tmp, 'ctx');
    await hostRootfs(join(ctx, 'rootfs'));
    await mkdir(join(ctx, 'src'), { recursive: true });
    for (let i = 0; i < 100; i++) await writeFile(join(ctx, 'src', `f${i}.txt`), `file ${i}\n`.repeat(100));
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
    const root = join(tmp, 'root');
    const out: Record<string, unknown> = { steps: 5, contextFiles: 100 };
    const { cache, backend, close } = await openCache({ root, logger: pino({ level: 'silent' }) });
    try {
      const fe = await Frontend.open({ cache, content: backend.content, root: join(root, 'frontend') });
      const timed = async (name: string, expectExecuted: number): Promise<void> => {
        const t = performance.now();
        const r = await fe.build({ context: ctx });
        out[`${name}S`] = seconds(performance.now() - t);
        if (r.executed !== expectExecuted) throw new Error(`${name}: ${r.executed} steps ran, expected ${expectExecuted}`);
      };
      await timed('firstBuild', 5);
      await timed('cachedRebuild', 0);
      await writeFile(join(ctx, 'src', 'f7.txt'), 'changed\n');
      await timed('oneFileChange', 3);
      await timed('cachedRebuildAgain', 0);
    } finally {
      await close();
    }
    const t = performance.now();
    await run(process.execPath, [CLI, '--root', root, 'build', ctx]);
    out['cachedRebuildCliProcessS'] = seconds(performance.now() - t);
    out['cachedRebuildGoalS'] = 0.5;
    console.log(JSON.stringify({ benchmark: 'frontend-build', ...out }));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
