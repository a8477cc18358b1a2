/**
 * The Namespaces service. Calls still carry the client's namespace header (containerd publishes
 * events in it and fails Create/Update without one).
 */
import { checkLabels, checkNamespace } from './errors.js';
import type { CallContext } from './errors.js';
import { labelsOf } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, Labels, Namespace } from './types.js';

interface WireNamespace {
  name: string;
  labels: Record<string, string>;
}

function toNamespace(n: WireNamespace | null | undefined): Namespace {
  return { name: n?.name ?? '', labels: labelsOf(n?.labels) };
}

/** Typed wrapper of containerd.services.namespaces.v1.Namespaces. */
export class NamespacesService {
  constructor(private readonly scope: Scope) {}

  /** Every namespace (optionally filtered with one containerd filter). */
  async list(filter = '', options?: CallOptions): Promise<Namespace[]> {
    const res = await this.scope.unary<{ namespaces: WireNamespace[] }>(
      'namespaces', 'List', { filter }, { method: 'Namespaces/List' }, options,
    );
    return res.namespaces.map(toNamespace);
  }

  /**
   * Namespace `name`. containerd 1.6 answers a missing namespace with empty labels instead of
   * NotFound; use `list` to test existence.
   */
  async get(name: string, options?: CallOptions): Promise<Namespace> {
    const ctx: CallContext = { method: 'Namespaces/Get', id: name };
    checkNamespace(name, ctx.method);
    const res = await this.scope.unary<{ namespace: WireNamespace | null }>('namespaces', 'Get', { name }, ctx, options);
    return toNamespace(res.namespace);
  }

  /** Creates namespace `name` (ErrAlreadyExists if it exists). */
  async create(name: string, labels: Labels = {}, options?: CallOptions): Promise<Namespace> {
    const ctx: CallContext = { method: 'Namespaces/Create', id: name };
    checkNamespace(name, ctx.method);
    checkLabels(labels, ctx);
    const res = await this.scope.unary<{ namespace: WireNamespace | null }>(
      'namespaces', 'Create', { namespace: { name, labels: { ...labels } } }, ctx, options,
    );
    return toNamespace(res.namespace);
  }

  /** Changes a namespace's labels: with `fieldpaths` (`labels.<k>`) only those, else all; returns the result. */
  async update(name: string, labels: Labels, fieldpaths: readonly string[] = [], options?: CallOptions): Promise<Namespace> {
    const ctx: CallContext = { method: 'Namespaces/Update', id: name };
    checkNamespace(name, ctx.method);
    checkLabels(labels, ctx);
    const req = { namespace: { name, labels: { ...labels } }, update_mask: fieldpaths.length ? { paths: [...fieldpaths] } : null };
    await this.scope.unary('namespaces', 'Update', req, ctx, options);
    // containerd 1.6 answers Update with an empty namespace; read back what it stored.
    return this.get(name, options);
  }

  /** Deletes an empty namespace (one holding only leases counts as empty; they go with it). */
  async delete(name: string, options?: CallOptions): Promise<void> {
    const ctx: CallContext = { method: 'Namespaces/Delete', id: name };
    checkNamespace(name, ctx.method);
    await this.scope.unary('namespaces', 'Delete', { name }, ctx, options);
  }
}
