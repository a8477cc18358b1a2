/**
 * A real daemon for the tests: `buildcache serve` in a child process on a socket under a temp dir,
 * stopped by PID after the file's tests; and a gRPC client built from BuildKit's own protos
 * (fixtures/buildkit), the stand-in for `buildctl`.
 */
import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { bin, tempDir } from '../cli/helpers.js';

export { bin, tempDir, run, lines, syntheticRoot, collect, spawnCli, type Run } from '../cli/helpers.js';

/** A daemon started by a test. */
export interface TestDaemon {
  readonly address: string;
  readonly socket: string;
  readonly root: string;
  readonly child: ChildProcess;
  /** Everything the daemon logged so far. */
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
after(() => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Starts `buildcache serve` on `root` (extra flags after `serve`); resolves once it serves. */
export async function startDaemon(root: string, extra: readonly string[] = [], socketDir?: string): Promise<TestDaemon> {
  const socket = join(socketDir ?? (await tempDir()), 'bc.sock');
  const address = `unix://${socket}`;
  const child = spawn(process.execPath, [bin, '--root', root, 'serve', '--addr', address, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let stderr = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      res({ code, signal });
    }),
  );
  await new Promise<void>((res, rej) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('"serving the cache"')) res();
    });
    void exited.then(({ code }) => rej(new Error(`daemon exited (${code}) before serving: ${stderr}`)));
  });
  return { address, socket, root, child, stderr: () => stderr, exited };
}

/** Peak resident memory of a process in bytes (VmHWM). */
export async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../server/fixtures/buildkit');

let buildkit: Record<string, MethodDefinition<object, object>> | undefined;

/** BuildKit's Control methods, from BuildKit's own control.proto (proto-loader, BuildKit's field names). */
function controlMethods(): Record<string, MethodDefinition<object, object>> {
  buildkit ??= loadSync('github.com/moby/buildkit/api/services/control/control.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [FIXTURES],
  })['moby.buildkit.v1.Control'] as Record<string, MethodDefinition<object, object>>;
  return buildkit;
}

/** What `buildctl` would do with BuildKit's generated client: unary and server-streaming calls by method name. */
export class BuildkitClient {
  private readonly grpc: Client;
  constructor(address: string) {
    this.grpc = new Client(address.replace('unix://', 'unix:'), credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 << 20 });
  }

  unary<Res>(name: string, request: object): Promise<Res> {
    const m = controlMethods()[name]!;
    return new Promise((res, rej) =>
      this.grpc.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, new Metadata(), (err: ServiceError | null, v?: object) =>
        err ? rej(err) : res(v as Res),
      ),
    );
  }

  /** A server stream read to its end; rejects with the status error (after `onMessage` saw what came). */
  async stream<Res>(name: string, request: object, onMessage?: (m: Res) => void): Promise<Res[]> {
    const m = controlMethods()[name]!;
    const call = this.grpc.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, request, new Metadata());
    const out: Res[] = [];
    for await (const msg of call) {
      out.push(msg as Res);
      onMessage?.(msg as Res);
    }
    return out;
  }

  close(): void {
    this.grpc.close();
  }
}

/** BuildKit's UsageRecord as BuildKit's proto decodes it. */
export interface UsageRecord {
  ID: string;
  Mutable: boolean;
  InUse: boolean;
  Size: string;
  Parent: string;
  CreatedAt: { seconds: string; nanos: number } | null;
  LastUsedAt: { seconds: string; nanos: number } | null;
  UsageCount: string;
  Description: string;
  RecordType: string;
  Shared: boolean;
  Parents: string[];
}
