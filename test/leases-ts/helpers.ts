/** Shared helpers of the leases-ts integration tests: clients, digests, real mounts. */
import { after, before } from 'node:test';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@containerd/leases-ts';
import type { Mount } from '@containerd/leases-ts';
import { containerdAddress } from '../harness/containerd.js';

export const execFileP = promisify(execFile);

/** A client on the run's daemon in a fresh namespace `<prefix>-<random>`. */
export function testClient(prefix: string, address = containerdAddress()): Client {
  return Client.connect({ address, namespace: `${prefix}-${randomBytes(4).toString('hex')}` });
}

/**
 * A client on a fresh namespace plus a view of it under a flat lease that lives for the test file:
 * the lease is created before the tests and deleted (with a synchronous GC) after them.
 */
export function leasedTestClient(prefix: string): { root: Client; lease: string; client: Client } {
  const root = testClient(prefix);
  const lease = uid(`${prefix}-lease`);
  before(async () => {
    await root.leases.create(lease, { 'containerd.io/gc.flat': new Date().toISOString() });
  });
  after(async () => {
    await root.leases.delete(lease, { sync: true });
    await root.close();
  });
  return { root, lease, client: root.withLease(lease) };
}

/** A unique name for an object of a test. */
export function uid(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** Mounts `mounts` (as containerd describes them) on a fresh temp dir with mount(8); returns it and an unmount. */
export async function mountAll(mounts: readonly Mount[]): Promise<{ target: string; unmount: () => Promise<void> }> {
  const target = await mkdtemp(join(tmpdir(), 'leases-ts-mnt-'));
  for (const m of mounts) {
    const type = m.type === 'rbind' ? 'bind' : m.type;
    await execFileP('mount', ['-t', type, '-o', m.options.join(','), m.source, target]);
  }
  return {
    target,
    unmount: async () => {
      for (let i = 0; i < mounts.length; i++) await execFileP('umount', [target]);
      await rmdir(target);
    },
  };
}

/** Runs `fn` with `mounts` mounted, unmounting afterwards. */
export async function withMounted<T>(mounts: readonly Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const m = await mountAll(mounts);
  try {
    return await fn(m.target);
  } finally {
    await m.unmount();
  }
}

/** Collects an async iterable. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Creates a lease, then deletes it with sync: a full, synchronous garbage collection. */
export async function syncGC(client: Client): Promise<void> {
  const id = uid('gc');
  await client.leases.create(id, {});
  await client.leases.delete(id, { sync: true });
}
