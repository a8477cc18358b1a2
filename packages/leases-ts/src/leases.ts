/** The Leases service: GC roots that hold content, ingests and snapshots. */
import { checkLabels, checkNonEmpty } from './errors.js';
import type { CallContext } from './errors.js';
import { labelsOf, toDate } from './convert.js';
import type { WireTimestamp } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, Labels, Lease, LeaseResource } from './types.js';

interface WireLease {
  id: string;
  created_at: WireTimestamp | null;
  labels: Record<string, string>;
}

function toLease(l: WireLease | null | undefined): Lease {
  return { id: l?.id ?? '', createdAt: toDate(l?.created_at), labels: labelsOf(l?.labels) };
}

function checkResource(resource: LeaseResource, ctx: CallContext): LeaseResource {
  checkNonEmpty(resource.id, 'resource.id', ctx);
  checkNonEmpty(resource.type, 'resource.type', ctx);
  return { id: resource.id, type: resource.type };
}

/** Typed wrapper of containerd.services.leases.v1.Leases. */
export class LeasesService {
  constructor(private readonly scope: Scope) {}

  /** Creates a lease; an empty `id` lets the daemon pick one. `containerd.io/gc.*` labels must be non-empty. */
  async create(id: string, labels: Labels = {}, options?: CallOptions): Promise<Lease> {
    const ctx: CallContext = { method: 'Leases/Create', id };
    checkLabels(labels, ctx);
    const res = await this.scope.unary<{ lease: WireLease | null }>('leases', 'Create', { id, labels }, ctx, options);
    return toLease(res.lease);
  }

  /** Deletes a lease; with `sync`, returns only after a full garbage collection has run. */
  async delete(id: string, opts: { sync?: boolean } = {}, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Leases/Delete', id };
    checkNonEmpty(id, 'id', ctx);
    await this.scope.unary('leases', 'Delete', { id, sync: opts.sync ?? false }, ctx, options);
  }

  /** Every lease, or those matching any of the containerd-syntax `filters`. */
  async list(filters: readonly string[] = [], options?: CallOptions): Promise<Lease[]> {
    const res = await this.scope.unary<{ leases: WireLease[] }>(
      'leases', 'List', { filters: [...filters] }, { method: 'Leases/List' }, options,
    );
    return res.leases.map(toLease);
  }

  /** Adds a resource to lease `id` (the resource need not exist yet). */
  async addResource(id: string, resource: LeaseResource, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Leases/AddResource', id, key: resource.id };
    checkNonEmpty(id, 'id', ctx);
    await this.scope.unary('leases', 'AddResource', { id, resource: checkResource(resource, ctx) }, ctx, options);
  }

  /** Removes a resource from lease `id`. */
  async deleteResource(id: string, resource: LeaseResource, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Leases/DeleteResource', id, key: resource.id };
    checkNonEmpty(id, 'id', ctx);
    await this.scope.unary('leases', 'DeleteResource', { id, resource: checkResource(resource, ctx) }, ctx, options);
  }

  /** The resources lease `id` holds. */
  async listResources(id: string, options?: CallOptions): Promise<LeaseResource[]> {
    const ctx: CallContext = { method: 'Leases/ListResources', id };
    checkNonEmpty(id, 'id', ctx);
    const res = await this.scope.unary<{ resources: { id: string; type: string }[] }>(
      'leases', 'ListResources', { id }, ctx, options,
    );
    return res.resources.map((r) => ({ id: r.id, type: r.type }));
  }
}
