/**
 * `buildcache.v1.Cache`, buildcache's own API: streamed du and prune (several policies, dry run),
 * Hold (records kept in use while a call stays open), and the CLI's operations (operation-service.ts).
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ImmutableRef, MutableRef } from '@buildcache/cache';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { policyFromWire, requestInt, toWireUsage, type WirePolicy } from './convert.js';
import type { ServiceContext } from './context.js';
import { turnTaker } from './calls.js';
import { operationService } from './operation-service.js';

/** The handlers of buildcache's own service. */
export function cacheService(ctx: ServiceContext): UntypedServiceImplementation {
  const { cache, calls } = ctx;
  return {
    ...operationService(ctx),
    DiskUsage: calls.stream<{ filters?: string[]; ageLimitMs?: string }, object>(
      'Cache/DiskUsage',
      async (req, scope) => {
        const ageLimitMs = requestInt(req.ageLimitMs, 'ageLimitMs');
        const entries = cache.diskUsage({ filters: req.filters ?? [], ...(ageLimitMs ? { ageLimitMs } : {}) });
        const turn = turnTaker();
        for await (const u of entries) {
          if (scope.signal.aborted) break;
          await scope.send(toWireUsage(u));
          await turn();
        }
      },
      { gates: [ctx.duGate] },
    ),
    Prune: calls.stream<{ policies?: WirePolicy[]; dryRun?: boolean }, object>(
      'Cache/Prune',
      async (req, scope) => {
        const policies = (req.policies ?? []).map(policyFromWire);
        if (policies.length === 0) throw new ErrInvalidArgument('prune needs at least one policy (an empty policy prunes every unused record)');
        const result = await cache.prune(policies, {
          dryRun: Boolean(req.dryRun),
          signal: scope.signal,
          onDeleted: (u) => scope.send({ deleted: toWireUsage(u) }),
        });
        await scope.send({ done: { deleted: String(result.deleted), reclaimed: String(result.reclaimed) } });
      },
      { gates: [ctx.pruneGate] },
    ),
    Hold: calls.stream<{ ids?: string[]; newMutable?: boolean; description?: string }, object>(
      'Cache/Hold',
      async (req, scope) => {
        const refs: (ImmutableRef | MutableRef)[] = [];
        try {
          for (const id of req.ids ?? []) refs.push(await cache.get(id));
          if (req.newMutable) refs.push(await cache.new(undefined, req.description ? { description: req.description } : {}));
          await scope.send({ ids: refs.map((r) => r.id) });
          await new Promise<void>((resolve) => {
            if (scope.signal.aborted) resolve();
            scope.signal.addEventListener('abort', () => resolve(), { once: true });
          });
        } finally {
          for (const r of refs) await r.release();
        }
      },
      { longLived: true },
    ),
  };
}
