/**
 * `moby.buildkit.v1.Control`, the part a cache owns: DiskUsage, Prune (streaming each deleted record),
 * ListWorkers (one worker: the backend and its GC policy) and Info; every other method answers
 * UNIMPLEMENTED saying what this server is.
 */
import { arch } from 'node:process';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { UsageInfo } from '@buildcache/cache';
import { parseFilters } from '@buildcache/filters';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { nsToMs, policyFromControl, toGCPolicy, toUsageRecord, type ControlPruneRequest } from './convert.js';
import type { ServiceContext } from './context.js';
import { turnTaker } from './calls.js';

/** Proto package name for Info's `package` field. */
export const PACKAGE = 'github.com/buildcache/buildcache';

const GO_ARCH: Readonly<Record<string, [string, string?]>> = { x64: ['amd64'], arm64: ['arm64'], ia32: ['386'], arm: ['arm', 'v7'], ppc64: ['ppc64le'], s390x: ['s390x'], riscv64: ['riscv64'] };

/** This machine's platform, as BuildKit names it. */
function platform(): object {
  const [architecture, variant] = GO_ARCH[arch] ?? [arch];
  return { OS: 'linux', Architecture: architecture, ...(variant ? { Variant: variant } : {}) };
}

function notServed(method: string): string {
  return `moby.buildkit.v1.Control/${method} is not implemented: buildcache serves the cache's part of BuildKit's control API (DiskUsage, Prune, ListWorkers, Info); run builds with buildkitd`;
}

/** The handlers of BuildKit's Control service. */
export function controlService(ctx: ServiceContext): UntypedServiceImplementation {
  const { cache, calls, worker } = ctx;
  const buildkitVersion = { package: PACKAGE, version: worker.version, revision: '' };
  const workerRecord = (): object => ({
    ID: worker.id,
    Labels: { ...worker.labels },
    platforms: [platform()],
    GCPolicy: worker.gcPolicies.map(toGCPolicy),
    BuildkitVersion: buildkitVersion,
  });
  return {
    DiskUsage: calls.unary<{ filter?: string[]; ageLimit?: string }, object>(
      'Control/DiskUsage',
      async (req) => {
        const ageLimitMs = nsToMs(req.ageLimit, 'ageLimit');
        const record: object[] = [];
        const turn = turnTaker();
        for await (const u of cache.diskUsage({ filters: req.filter ?? [], ...(ageLimitMs ? { ageLimitMs } : {}) })) {
          record.push(toUsageRecord(u));
          await turn();
        }
        return { record };
      },
      // The whole reply is built in memory (BuildKit's one-message DiskUsage): fewer of these at once.
      { gates: [ctx.duGate, ctx.wholeReplyGate] },
    ),
    Prune: calls.stream<ControlPruneRequest, object>(
      'Control/Prune',
      async (req, scope) => {
        const policy = policyFromControl(req);
        await cache.prune([policy], { signal: scope.signal, onDeleted: (u: UsageInfo) => scope.send(toUsageRecord(u)) });
      },
      { gates: [ctx.pruneGate] },
    ),
    ListWorkers: calls.unary<{ filter?: string[] }, object>('Control/ListWorkers', async (req) => {
      const filters = req.filter ?? [];
      let filter;
      try {
        filter = filters.length ? parseFilters(filters) : undefined;
      } catch (err) {
        throw new ErrInvalidArgument(`filter: ${(err as Error).message}`, { cause: err });
      }
      const platformText = Object.values(platform()).join('/');
      const matches = filter?.match((path) => {
        if (path[0] === 'id') return worker.id;
        if (path[0] === 'labels') return path.length > 1 ? worker.labels[path.slice(1).join('.')] : undefined;
        if (path[0] === 'platforms') return platformText;
        return undefined;
      }) ?? true;
      return Promise.resolve({ record: matches ? [workerRecord()] : [] });
    }),
    Info: calls.unary<object, object>('Control/Info', () =>
      Promise.resolve({ buildkitVersion }),
    ),
    Solve: calls.unimplemented(notServed('Solve')),
    Status: calls.unimplemented(notServed('Status')),
    Session: calls.unimplemented(notServed('Session')),
    ListenBuildHistory: calls.unimplemented(notServed('ListenBuildHistory')),
    UpdateBuildHistory: calls.unimplemented(notServed('UpdateBuildHistory')),
  };
}
