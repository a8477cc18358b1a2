/**
 * A private containerd for tests: own config, root, state dir and sockets under a temp dir,
 * started on demand and stopped by PID. It never talks to or touches a system containerd.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, rm, readFile, access, constants } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, delimiter } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** A running private containerd. */
export interface ContainerdInstance {
  /** Unix socket path of the gRPC API. */
  readonly address: string;
  /** PID of the current daemon process (changes after `restart`). */
  readonly pid: number;
  /** Temp dir holding config, root, state, sockets and the daemon log. */
  readonly dir: string;
  /** The daemon's root directory (snapshotter and content data live below it). */
  readonly root: string;
  /** Stops the daemon by PID, unmounts what it left mounted and removes the temp dir. */
  stop(): Promise<void>;
  /** Stops the daemon process (SIGKILL with `hard`, else SIGTERM) but keeps its dir, socket path and root. */
  kill(options?: { hard?: boolean }): Promise<void>;
  /** Starts the daemon again on the same config, socket and root (stopping it first if it runs). */
  restart(): Promise<void>;
}

/** Thrown when containerd is not installed: tests that need it must fail, not skip. */
export class ContainerdMissingError extends Error {
  constructor() {
    super(
      'containerd is not installed, and the integration tests need a real containerd.\n' +
        'Install it (Debian/Ubuntu, as root): apt-get update && apt-get install -y containerd runc',
    );
    this.name = 'ContainerdMissingError';
  }
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function configToml(dir: string): string {
  return [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    '[debug]',
    '  address = ""',
    '  level = "info"',
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
    '',
  ].join('\n');
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Mount points at or below `dir`, deepest first. */
async function mountsBelow(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(dir + '/')))
    .map((p) => p.replace(/\\040/g, ' '));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmountAll(dir: string): Promise<void> {
  for (const point of await mountsBelow(dir)) {
    await execFileP('umount', ['-l', point]).catch(() => undefined);
  }
}

/** Asks the daemon for its version over the gRPC socket (the Version RPC), via `ctr`. */
export async function containerdVersion(address: string): Promise<string> {
  const { stdout } = await execFileP('ctr', ['--address', address, '--timeout', '2s', 'version'], { timeout: 5000 });
  const match = /Server:\s*\n\s*Version:\s*(\S+)/.exec(stdout);
  if (!match?.[1]) throw new Error(`unexpected ctr version output: ${stdout}`);
  return match[1];
}

/** Starts a private containerd and waits until its socket answers the Version RPC. */
export async function startContainerd(options: { timeoutMs?: number } = {}): Promise<ContainerdInstance> {
  const bin = await findOnPath('containerd');
  if (!bin || !(await findOnPath('ctr'))) throw new ContainerdMissingError();

  const dir = await mkdtemp(join(tmpdir(), 'buildcache-containerd-'));
  const config = join(dir, 'config.toml');
  await writeFile(config, configToml(dir));
  const logPath = join(dir, 'containerd.log');
  const address = join(dir, 'containerd.sock');
  const { open } = await import('node:fs/promises');

  let child: ChildProcess | undefined;
  const spawnDaemon = async (): Promise<ChildProcess> => {
    const log = await open(logPath, 'a');
    const c = spawn(bin, ['--config', config], { stdio: ['ignore', log.fd, log.fd], detached: false });
    await log.close();
    if (c.pid === undefined) throw new Error(`could not start ${bin}`);
    return c;
  };
  const killDaemon = async (hard = false): Promise<void> => {
    const c = child;
    if (!c || c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const pid = c.pid;
    process.kill(pid, hard ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 10_000);
    await exited(c);
    clearTimeout(timer);
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killDaemon();
    await unmountAll(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  };

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (!child || child.exitCode !== null || child.signalCode !== null) break;
      try {
        await containerdVersion(address);
        return;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const logText = await readFile(logPath, 'utf8').catch(() => '');
    await stop();
    throw new Error(
      `private containerd did not answer on ${address}: ${String(lastError)}\n--- containerd log (tail) ---\n` +
        logText.split('\n').slice(-30).join('\n'),
    );
  };

  child = await spawnDaemon();
  await waitReady();
  return {
    address,
    dir,
    root: join(dir, 'root'),
    get pid(): number {
      return child?.pid ?? -1;
    },
    stop,
    kill: (opts: { hard?: boolean } = {}) => killDaemon(opts.hard ?? false),
    restart: async () => {
      if (stopped) throw new Error('the private containerd was stopped for good');
      await killDaemon();
      child = await spawnDaemon();
      await waitReady();
    },
  };
}

/** Environment variable through which the test runner hands the daemon's socket to the tests. */
export const CONTAINERD_ENV = 'BUILDCACHE_TEST_CONTAINERD';

/**
 * The socket of the run's private containerd. Tests that need containerd call this; outside the
 * runner (`npm test`) it fails with a message instead of skipping.
 */
export function containerdAddress(): string {
  const address = process.env[CONTAINERD_ENV];
  if (!address) {
    throw new Error(
      `${CONTAINERD_ENV} is not set: run the tests through the runner (npm test, or node test/dist/harness/run.js), ` +
        'which starts a private containerd',
    );
  }
  return address;
}
