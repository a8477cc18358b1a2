/** What the handlers of both services share: the cache, the call plumbing, limits and the worker's description. */
import type { CacheManager, PrunePolicy } from '@buildcache/cache';
import type { Calls, Gate } from './calls.js';
import type { Workspace } from './workspace.js';

/** The one worker the daemon reports (BuildKit's ListWorkers), and its version (Info). */
export interface WorkerInfo {
  /** Stable ID of the worker. */
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The automatic GC policies, if automatic GC runs. */
  readonly gcPolicies: readonly PrunePolicy[];
  readonly version: string;
}

/** Shared by every handler. */
export interface ServiceContext {
  readonly cache: CacheManager;
  readonly calls: Calls;
  /** Shared by every disk-usage call, BuildKit's and buildcache's. */
  readonly duGate: Gate;
  /** BuildKit's DiskUsage, whose reply is one message built in memory. */
  readonly wholeReplyGate: Gate;
  /** Shared by every prune call (they run one at a time in the cache; this bounds the queue). */
  readonly pruneGate: Gate;
  readonly worker: WorkerInfo;
  /** The operations' stores and scratch space. */
  readonly workspace: Workspace;
}
