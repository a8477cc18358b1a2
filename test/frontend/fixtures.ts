/**
 * Fixtures of the build frontend tests: a tiny root filesystem made of this machine's /bin/sh and a
 * few tools with the libraries `ldd` names (so RUN steps have a shell), a runc wrapper that counts
 * invocations, reading a file of a record, and the CLI as a child process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CacheManager, RefOptions } from '@buildcache/cache';

const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The CLI entry point. */
export const CLI = join(repo, 'packages/cli/bin/buildcache.js');

const TOOLS = ['/bin/sh', '/bin/cat', '/bin/sleep', '/bin/ls', '/bin/mkdir', '/usr/bin/id', '/usr/bin/env'];

/** Copies the tools and their libraries into `<dir>` as a rootfs (bin, lib, etc/passwd, etc/group). */
export async function hostRootfs(dir: string): Promise<void> {
  const files = new Set(TOOLS);
  for (const tool of TOOLS) {
    const { stdout } = await run('ldd', [tool]);
    for (const m of stdout.matchAll(/(\/\S+) \(0x/g)) files.add(m[1]!);
  }
  for (const f of files) {
    await mkdir(join(dir, dirname(f)), { recursive: true });
    await copyFile(f, join(dir, f));
    await chmod(join(dir, f), 0o755);
  }
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\n');
}

/** A runc wrapper at `<dir>/runc` logging each invocation's arguments to `<dir>/runc.log`. */
export async function countingRuntime(dir: string): Promise<{ path: string; runs(): Promise<number> }> {
  const path = join(dir, 'runc');
  const log = join(dir, 'runc.log');
  const real = (await run('sh', ['-c', 'command -v runc'])).stdout.trim();
  await writeFile(path, `#!/bin/sh\necho "$*" >> '${log}'\nexec '${real}' "$@"\n`);
  await chmod(path, 0o755);
  await writeFile(log, '');
  return {
    path,
    async runs() {
      return (await readFile(log, 'utf8')).split('\n').filter((l) => / run /.test(` ${l} `)).length;
    },
  };
}

/** Runs the CLI to completion; resolves with its exit code and output. */
export function cli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((res) => child.on('close', (code) => res({ code: code ?? 1, stdout, stderr })));
}

/** Starts the CLI with piped output. */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

/** Reads `path` (utf8) in the record `record` of `cache`, mounted read-only for the read. */
export async function readRecordFile(cache: CacheManager, record: string, path: string, opts: RefOptions = {}): Promise<string> {
  const ref = await cache.get(record, opts);
  try {
    const m = await ref.mount({ readonly: true });
    try {
      return await readFile(join(m.target, path), 'utf8');
    } finally {
      await m.unmount();
    }
  } finally {
    await ref.release();
  }
}
