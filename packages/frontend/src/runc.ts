/**
 * The RUN executor: one `runc run` per step in an OCI bundle whose root is the step's mounted
 * snapshot, with its own runc state root (never the system's), no network, the step's stdout and
 * stderr streamed line by line, and the mount stubs runc leaves in the rootfs removed afterwards.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile, lstat, rmdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { ErrRuntime } from '@buildcache/errdefs';
import { mountPointsUnder, unmount } from '@buildcache/snapshot';
import { resolveUser } from './users.js';

/** Container IDs this frontend creates start with this, so it never touches anyone else's. */
export const CONTAINER_PREFIX = 'buildcache-';

/** Where runc keeps its state and the bundles live, and which runc binary runs. */
export interface RuncOptions {
  /** runc `--root` (this frontend's own, e.g. `<cache root>/frontend/runc`). */
  readonly stateRoot: string;
  /** Bundle directories, one per running step. */
  readonly bundleRoot: string;
  /** The runc binary (default `runc` on PATH). */
  readonly runtime?: string;
  readonly logger: Logger;
}

/** What a RUN step executes. */
export interface Process {
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly cwd: string;
  /** `uid[:gid]` or names from the rootfs's /etc/passwd and /etc/group; empty is root. */
  readonly user: string;
}

/** A line of step output. */
export type OutputHandler = (stream: 'stdout' | 'stderr', line: string) => void;

/** Docker's default capabilities. */
const CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Mount targets runc creates in the rootfs when missing: removed after the run if still empty. */
const STUBS = ['proc', 'dev', 'sys'];

function spec(rootfs: string, proc: Process, uid: number, gid: number, additionalGids: number[]): unknown {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid, gid, additionalGids },
      args: proc.args,
      env: proc.env,
      cwd: proc.cwd,
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      noNewPrivileges: false,
    },
    root: { path: rootfs, readonly: false },
    hostname: 'buildcache',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
        '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}

const exists = (p: string): Promise<boolean> => lstat(p).then(() => true, () => false);

/** Runs steps with runc under one state root. */
export class Runc {
  constructor(private readonly options: RuncOptions) {}

  private get runtime(): string {
    return this.options.runtime ?? 'runc';
  }

  /** Runs runc with this state root and waits (failures are the caller's to check). */
  private async runc(args: readonly string[]): Promise<void> {
    const child = spawn(this.runtime, ['--root', this.options.stateRoot, ...args], { stdio: 'ignore' });
    await new Promise<void>((res, rej) => {
      child.on('error', rej);
      child.on('close', () => res());
    });
  }

  /**
   * Force-deletes what a killed build left: this root's containers named `buildcache-*`, and
   * mounts and bundles under the bundle root. Others' containers are never listed (own `--root`).
   */
  async cleanup(): Promise<void> {
    await mkdir(this.options.stateRoot, { recursive: true, mode: 0o700 });
    await mkdir(this.options.bundleRoot, { recursive: true, mode: 0o700 });
    for (const id of await this.listIds()) {
      this.options.logger.info({ id }, 'deleting a container a killed build left');
      await this.runc(['delete', '--force', id]);
    }
    for (const point of await mountPointsUnder(this.options.bundleRoot)) await unmount(point);
    for (const name of await readdir(this.options.bundleRoot)) await rm(join(this.options.bundleRoot, name), { recursive: true, force: true });
  }

  /** IDs of this root's containers (only ours: `buildcache-*`), from runc's state dirs (no runc call when there is none). */
  async listIds(): Promise<string[]> {
    const names = await readdir(this.options.stateRoot).catch(() => []);
    return names.filter((id) => id.startsWith(CONTAINER_PREFIX));
  }

  /**
   * Runs `proc` as container `buildcache-<name>` on `rootfs` (a mounted, writable snapshot);
   * resolves with the process's exit code. A runtime failure (not the step's) is ErrRuntime.
   */
  async run(name: string, rootfs: string, proc: Process, onOutput: OutputHandler, signal?: AbortSignal): Promise<number> {
    const id = CONTAINER_PREFIX + name;
    const bundle = join(this.options.bundleRoot, id);
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    const stubs = await Promise.all(STUBS.map(async (s) => ((await exists(join(rootfs, s))) ? undefined : s)));
    try {
      const { uid, gid, additionalGids } = await resolveUser(rootfs, proc.user);
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec(rootfs, proc, uid, gid, additionalGids)));
      const log = join(bundle, 'runc-log.json');
      // setpriv: runc dies with this process (BuildKit sets the same parent-death signal).
      const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', this.runtime, '--root', this.options.stateRoot, '--log', log, '--log-format', 'json',
        'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
      const onAbort = (): void => void this.runc(['kill', id, 'KILL']).then(() => child.kill('SIGKILL'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const lines = (stream: 'stdout' | 'stderr'): Promise<void> =>
        new Promise((res) => {
          const rl = createInterface({ input: child[stream], crlfDelay: Infinity });
          rl.on('line', (l) => onOutput(stream, l));
          rl.on('close', res);
        });
      const [code] = await Promise.all([
        new Promise<number>((res, rej) => {
          child.on('error', rej);
          child.on('exit', (c, s) => res(c ?? (s ? 128 + 9 : 1)));
        }),
        lines('stdout'),
        lines('stderr'),
      ]);
      signal?.removeEventListener('abort', onAbort);
      if (code !== 0) {
        const errors = (await readFile(log, 'utf8').catch(() => ''))
          .split('\n').filter(Boolean)
          .map((l) => { try { return JSON.parse(l) as { level?: string; msg?: string }; } catch { return { msg: l }; } })
          .filter((e) => e.level === 'error' || e.level === 'fatal');
        if (errors.length > 0) {
          throw new ErrRuntime(`runc could not run the step: ${errors.map((e) => e.msg).join('; ')}`, { details: { id, log: errors.map((e) => e.msg) } });
        }
      }
      return code;
    } finally {
      await this.runc(['delete', '--force', id]);
      await rm(bundle, { recursive: true, force: true });
      await removeStubs(rootfs, stubs.filter((s): s is string => s !== undefined));
    }
  }
}

/** Removes the mount targets runc created, when they are still empty directories. */
async function removeStubs(rootfs: string, created: readonly string[]): Promise<void> {
  for (const s of created) await rmdir(join(rootfs, s)).catch(() => undefined);
}
