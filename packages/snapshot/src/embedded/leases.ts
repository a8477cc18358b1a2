/**
 * Leases of the embedded backend, stored in LevelDB: a lease record plus one key per resource, so
 * that creating an object under a lease and adding it to the lease is one atomic batch.
 */
import { randomBytes } from 'node:crypto';
import { ErrAlreadyExists, ErrInvalidArgument, ErrNotFound, ErrNotImplemented } from '@buildcache/errdefs';
import type { GCStats, Lease, LeaseManager, LeaseResource } from '../types.js';
import type { EmbeddedContext } from './context.js';
import { SEP, SYNC, checkName, cleanLabels, keys, range, scan, writeBatch } from './db.js';
import type { BatchOp, MetaDB } from './db.js';
import { compileFilters, fieldsAdaptor } from './filters.js';

/** A lease as stored. */
export interface LeaseRecord {
  readonly labels: Record<string, string>;
  readonly created: number;
}

const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;

/** Throws ErrNotFound unless lease `id` exists (checked under the metadata mutex by callers). */
export async function assertLease(db: MetaDB, id: string): Promise<void> {
  if ((await db.get(keys.lease(id))) === undefined) {
    throw new ErrNotFound(`lease ${JSON.stringify(id)} does not exist`, { details: { id } });
  }
}

/** Batch op adding one resource to a lease. */
export function putResource(lease: string, type: string, id: string): BatchOp {
  return { type: 'put', key: keys.leaseResource(lease, type, id), value: '' };
}

/** Batch op removing one resource from a lease. */
export function delResource(lease: string, type: string, id: string): BatchOp {
  return { type: 'del', key: keys.leaseResource(lease, type, id) };
}

/** Splits a resource key back into lease, type and id. */
export function parseResourceKey(key: string): { lease: string; type: string; id: string } {
  const body = key.slice(keys.allLeaseResourcesPrefix.length);
  const [lease = '', type = '', ...rest] = body.split(SEP);
  return { lease, type, id: rest.join(SEP) };
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;

function checkResource(r: LeaseResource): void {
  checkName('resource id', r.id);
  if (r.type === 'content') {
    if (!DIGEST.test(r.id)) throw new ErrInvalidArgument(`content resource ${JSON.stringify(r.id)} is not a valid digest`, { details: { digest: r.id } });
    return;
  }
  if (r.type === 'ingests') return;
  const parts = r.type.split('/');
  if (parts[0] === 'snapshots') {
    if (parts.length !== 2 || parts[1] === '') {
      throw new ErrInvalidArgument(`invalid snapshot resource type ${JSON.stringify(r.type)}`, { details: { id: r.id } });
    }
    return;
  }
  throw new ErrNotImplemented(`resource type ${JSON.stringify(r.type)} not supported yet`, { details: { id: r.id } });
}

function toLease(id: string, rec: LeaseRecord): Lease {
  return { id, createdAt: new Date(rec.created), labels: { ...rec.labels } };
}

/** containerd-style leases over the shared metadata DB. */
export class EmbeddedLeaseManager implements LeaseManager {
  /** @param gc runs a full garbage collection (for `delete({ sync: true })`). */
  constructor(
    private readonly ctx: EmbeddedContext,
    private readonly gc: () => Promise<GCStats>,
  ) {}

  async create(id: string, labels?: Readonly<Record<string, string>>): Promise<Lease> {
    const leaseId = id === '' ? `${Date.now()}-${randomBytes(3).toString('hex')}` : id;
    if (leaseId.length > 76 || !IDENTIFIER.test(leaseId)) {
      throw new ErrInvalidArgument(`lease id ${JSON.stringify(leaseId)} must match ${IDENTIFIER.source} (at most 76 characters)`, { details: { id: leaseId } });
    }
    const rec: LeaseRecord = { labels: cleanLabels(labels, `lease ${JSON.stringify(leaseId)}`), created: this.ctx.clock() };
    return this.ctx.mutex(async () => {
      if ((await this.ctx.db.get(keys.lease(leaseId))) !== undefined) {
        throw new ErrAlreadyExists(`lease ${JSON.stringify(leaseId)}: already exists`, { details: { id: leaseId } });
      }
      await this.ctx.db.put(keys.lease(leaseId), rec, SYNC);
      return toLease(leaseId, rec);
    });
  }

  async delete(id: string, options?: { sync?: boolean }): Promise<void> {
    await this.ctx.mutex(async () => {
      await assertLease(this.ctx.db, id);
      await this.removeLocked([id]);
    });
    if (options?.sync) await this.gc();
  }

  async deleteMany(ids: readonly string[]): Promise<void> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return;
    await this.ctx.mutex(async () => {
      const found = await this.ctx.db.getMany(unique.map((id) => keys.lease(id)));
      await this.removeLocked(unique.filter((_, i) => found[i] !== undefined));
    });
  }

  /**
   * Removes existing leases `ids` (under the mutex): their records in one durable write, then their
   * resource keys, range by range inside LevelDB (no scan through JS). A crash between the two
   * leaves resource keys of leases that are gone: they hold nothing, and the next collection
   * removes them (a lease made meanwhile under the same ID would keep their objects until then).
   */
  private async removeLocked(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await writeBatch(this.ctx.db, ids.map((id): BatchOp => ({ type: 'del', key: keys.lease(id) })));
    for (const id of ids) await this.ctx.db.clear(range(keys.leaseResourcePrefix(id)));
  }

  async list(filters?: readonly string[]): Promise<Lease[]> {
    const filter = compileFilters(filters);
    const out: Lease[] = [];
    for (const [k, rec] of await scan<LeaseRecord>(this.ctx.db, keys.leasePrefix)) {
      const id = k.slice(keys.leasePrefix.length);
      if (filter.match(fieldsAdaptor({ id }, rec.labels))) out.push(toLease(id, rec));
    }
    return out;
  }

  async addResource(id: string, resource: LeaseResource): Promise<void> {
    checkResource(resource);
    await this.ctx.mutex(async () => {
      await assertLease(this.ctx.db, id);
      await writeBatch(this.ctx.db, [putResource(id, resource.type, resource.id)]);
    });
  }

  async deleteResource(id: string, resource: LeaseResource): Promise<void> {
    checkResource(resource);
    await this.ctx.mutex(async () => {
      await assertLease(this.ctx.db, id);
      await writeBatch(this.ctx.db, [delResource(id, resource.type, resource.id)]);
    });
  }

  async listResources(id: string): Promise<LeaseResource[]> {
    await assertLease(this.ctx.db, id);
    return (await scan(this.ctx.db, keys.leaseResourcePrefix(id))).map(([k]) => {
      const { type, id: rid } = parseResourceKey(k);
      return { type, id: rid };
    });
  }
}
