/**
 * `buildcache.v1.Cache`, buildcache's own API: streamed du and prune (several policies, dry run),
 * Hold (records kept in use while a call stays open), and the operations reserved on the socket, each
 * one handler in OPERATIONS: UNIMPLEMENTED (the CLI runs them in its own process).
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ImmutableRef, MutableRef } from '@buildcache/cache';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { policyFromWire, requestInt, toWireUsage, type WirePolicy } from './convert.js';
import type { ServiceContext } from './context.js';
import { turnTaker } from './calls.js';

/** The operations of buildcache's own API that the daemon does not serve (the CLI runs them in its own process). */
export const OPERATIONS = ['Build', 'Pull', 'Push', 'Import', 'Export', 'Images'] as const;

/** The handlers of buildcache's own service. */
export function cacheService(ctx: ServiceContext): UntypedServiceImplementation {
  const { cache, calls } = ctx;
  const handlers: UntypedServiceImplementation = {
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
  for (const op of OPERATIONS) {
    handlers[op] = calls.unimplemented(
      `buildcache.v1.Cache/${op} is not implemented yet: this daemon serves du, prune and hold; buildcache ${op.toLowerCase()} runs in the CLI's own process`,
    );
  }
  return handlers;
}
