/**
 * The test runner behind `npm test`: starts one private containerd for the run, hands its socket
 * to every test file through the environment, runs node's test runner over the compiled tests of
 * all packages, and stops the daemon by PID at the end, also on failure or interrupt.
 */
import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startContainerd, CONTAINERD_ENV, ContainerdMissingError } from './containerd.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await testFiles(p)));
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

async function collect(filters: string[]): Promise<string[]> {
  const roots = [join(repo, 'test/dist')];
  for (const pkg of await readdir(join(repo, 'packages'))) roots.push(join(repo, 'packages', pkg, 'dist/test'));
  const files: string[] = [];
  for (const root of roots) {
    if (await stat(root).then((s) => s.isDirectory(), () => false)) files.push(...(await testFiles(root)));
  }
  return filters.length ? files.filter((f) => filters.some((x) => f.includes(x))) : files;
}

async function main(): Promise<number> {
  const files = await collect(process.argv.slice(2));
  if (files.length === 0) {
    console.error('no test files found: run `npm run build` first');
    return 1;
  }
  let daemon;
  try {
    daemon = await startContainerd();
  } catch (err) {
    console.error(err instanceof ContainerdMissingError ? err.message : `could not start containerd: ${String(err)}`);
    return 1;
  }
  console.log(`private containerd ${daemon.address} (pid ${daemon.pid})`);
  const onSignal = (sig: NodeJS.Signals): void => {
    child.kill(sig);
  };
  const child = spawn(
    process.execPath,
    ['--test', '--test-concurrency=1', '--test-timeout=600000', ...files],
    { stdio: 'inherit', env: { ...process.env, [CONTAINERD_ENV]: daemon.address }, cwd: repo },
  );
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const code = await new Promise<number>((res) => child.on('exit', (c, s) => res(c ?? (s ? 1 : 0))));
  await daemon.stop();
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
