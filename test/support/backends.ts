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

/** A kind whose `open(dir)` makes the opener of one backend state (called again by `reopen`). */
function kind(name: string, opener: (dir: string) => () => Promise<Backend>): BackendKind {
  return {
    name,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), `bc-test-${name}-`));
      const make = opener(dir);
      let backend = await make();
      return {
        get backend() {
          return backend;
        },
        dir,
        async reopen() {
          backend = await make();
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
  kind(`embedded-${mode}`, (dir) => () =>
    openEmbeddedBackend({ root: join(dir, 'backend'), snapshotter: mode, logger: silent }));

const containerd = (snapshotter: Snapshotter): BackendKind =>
  kind(`containerd-${snapshotter}`, (dir) => {
    const namespace = `bctest-${randomBytes(5).toString('hex')}`;
    const mountRoot = join(dir, 'mounts');
    return () => openContainerdBackend({ address: containerdAddress(), namespace, snapshotter, mountRoot, logger: silent });
  });

/** Every backend kind the suites run against. */
export const BACKENDS: readonly BackendKind[] = [
  embedded('overlayfs'),
  embedded('native'),
  containerd('overlayfs'),
  containerd('native'),
];
