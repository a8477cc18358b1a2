/**
 * The backends every conformance and cache test runs against: the embedded backend in overlay and
 * native mode, and the run's private containerd (a fresh namespace per opened backend).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { ContainerdBackend, openEmbeddedBackend, openContainerdBackend, type Backend } from '@buildcache/snapshot';
import { containerdAddress } from '../harness/containerd.js';

/** A backend opened for one test, with a temp dir for whatever else the test keeps. */
export interface TestBackend {
  readonly backend: Backend;
  /** Temp dir owned by the test (cache metadata goes here). */
  readonly dir: string;
  /** What the backend was opened from (for a child process that opens it too). */
  readonly spec: BackendSpec;
  /** Closes the backend and removes the temp dir. */
  close(): Promise<void>;
  /** Opens the same backend state again (after `backend.close()`), as a restarted process would. */
  reopen(): Promise<Backend>;
  /**
   * The same open backend with every default call deadline lowered to `ms` (containerd: a client
   * view with unary and stream deadlines of `ms`; the embedded backend has no deadlines: itself).
   * Not to be closed.
   */
  withDeadlines(ms: number): Backend;
}

/** One kind of backend. */
export interface BackendKind {
  readonly name: string;
  open(): Promise<TestBackend>;
}

const silent = pino({ level: 'silent' });

type Snapshotter = 'overlayfs' | 'native';

/** What one backend is opened from: plain data, so that a child process can open the same backend. */
export type BackendSpec =
  | { readonly embedded: { readonly root: string; readonly snapshotter: Snapshotter } }
  | {
      readonly containerd: {
        readonly address: string;
        readonly namespace: string;
        readonly snapshotter: Snapshotter;
        readonly mountRoot: string;
      };
    };

/** Opens the backend `spec` describes. */
export function openBackendSpec(spec: BackendSpec): Promise<Backend> {
  return 'embedded' in spec
    ? openEmbeddedBackend({ ...spec.embedded, logger: silent })
    : openContainerdBackend({ ...spec.containerd, logger: silent });
}

/** A kind whose backends are opened from the spec `specOf(dir)` gives (again by `reopen`). */
function kind(name: string, specOf: (dir: string) => BackendSpec): BackendKind {
  return {
    name,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), `bc-test-${name}-`));
      const spec = specOf(dir);
      let backend = await openBackendSpec(spec);
      return {
        get backend() {
          return backend;
        },
        dir,
        spec,
        async reopen() {
          backend = await openBackendSpec(spec);
          return backend;
        },
        withDeadlines(ms) {
          if (!(backend instanceof ContainerdBackend)) return backend;
          return new ContainerdBackend(backend.client.withTimeout(ms, ms), backend.snapshotter.name as Snapshotter);
        },
        async close() {
          await backend.close().catch(() => undefined);
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

const embedded = (mode: Snapshotter): BackendKind =>
  kind(`embedded-${mode}`, (dir) => ({ embedded: { root: join(dir, 'backend'), snapshotter: mode } }));

const containerd = (snapshotter: Snapshotter): BackendKind =>
  kind(`containerd-${snapshotter}`, (dir) => ({
    containerd: {
      address: containerdAddress(),
      namespace: `bctest-${randomBytes(5).toString('hex')}`,
      snapshotter,
      mountRoot: join(dir, 'mounts'),
    },
  }));

/** Every backend kind the suites run against. */
export const BACKENDS: readonly BackendKind[] = [
  embedded('overlayfs'),
  embedded('native'),
  containerd('overlayfs'),
  containerd('native'),
];
