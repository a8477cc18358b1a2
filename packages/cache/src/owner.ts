/**
 * The cache's owner ID: made once, when the cache is created, and kept in its metadata. Every lease
 * the cache makes carries it, so that caches sharing a containerd namespace (or an embedded backend)
 * each sweep only their own leases and never one without the label.
 */
import { randomBytes } from 'node:crypto';
import { ErrNotFound } from '@buildcache/errdefs';
import type { MetadataStore } from '@buildcache/metadata';
import type { Backend, GCStats, Lease, LeaseManager, LeaseResource } from '@buildcache/snapshot';
import { STATE_ITEM } from './gc-debt.js';
import { LABEL_TEMPORARY } from './leases.js';

/** Label naming the cache (its owner ID) that made a lease. */
export const LABEL_OWNER = 'buildcache/owner';
const KEY = 'owner';

/** The owner ID of the cache whose metadata is `store`, made and stored durably on first use. */
export async function loadOwner(store: MetadataStore): Promise<string> {
  const item = await store.get(STATE_ITEM);
  const known = item.get(KEY);
  if (typeof known === 'string' && known !== '') return known;
  const owner = randomBytes(16).toString('hex');
  item.set(KEY, owner);
  await item.commit();
  return owner;
}

/** The containerd filter selecting the leases of `owner`. */
export function ownerFilter(owner: string): string {
  return `labels."${LABEL_OWNER}"==${owner}`;
}

/**
 * Leases that get the owner label on creation; everything else passes through. Remembers the
 * temporary leases it created and has not seen deleted, so that a clean close can name them.
 */
class OwnedLeases implements LeaseManager {
  readonly temporary = new Set<string>();
  constructor(
    private readonly leases: LeaseManager,
    private readonly owner: string,
  ) {}
  create(id: string, labels: Readonly<Record<string, string>> = {}): Promise<Lease> {
    if (labels[LABEL_TEMPORARY] !== undefined) this.temporary.add(id);
    return this.leases.create(id, { ...labels, [LABEL_OWNER]: this.owner });
  }
  async delete(id: string, options?: { sync?: boolean }): Promise<void> {
    try {
      await this.leases.delete(id, options);
    } catch (err) {
      if (err instanceof ErrNotFound) this.temporary.delete(id);
      throw err;
    }
    this.temporary.delete(id);
  }
  async deleteMany(ids: readonly string[]): Promise<void> {
    await this.leases.deleteMany(ids);
    for (const id of ids) this.temporary.delete(id);
  }
  list(filters?: readonly string[]): Promise<Lease[]> {
    return this.leases.list(filters);
  }
  addResource(id: string, resource: LeaseResource): Promise<void> {
    return this.leases.addResource(id, resource);
  }
  deleteResource(id: string, resource: LeaseResource): Promise<void> {
    return this.leases.deleteResource(id, resource);
  }
  listResources(id: string): Promise<LeaseResource[]> {
    return this.leases.listResources(id);
  }
}

/**
 * The backend as the cache of `owner` uses it: every lease it creates, and the backend's own GC
 * lease, carries the owner label (the GC lease also the temporary one, so a crash cannot leak it).
 */
export function ownedBackend(backend: Backend, owner: string): Backend {
  const leaseLabels = { [LABEL_OWNER]: owner, [LABEL_TEMPORARY]: new Date().toISOString() };
  return {
    kind: backend.kind,
    snapshotter: backend.snapshotter,
    content: backend.content,
    leases: new OwnedLeases(backend.leases, owner),
    applier: backend.applier,
    differ: backend.differ,
    mounter: backend.mounter,
    garbageCollect: (): Promise<GCStats> => backend.garbageCollect({ leaseLabels }),
    close: () => backend.close(),
  };
}

/**
 * The temporary leases created through `backend` (made by `ownedBackend`) that were not deleted
 * since; undefined for any other backend.
 */
export function temporaryLeases(backend: Backend): string[] | undefined {
  return backend.leases instanceof OwnedLeases ? [...backend.leases.temporary] : undefined;
}
