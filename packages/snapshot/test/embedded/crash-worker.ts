/**
 * Child process for the durability tests (not a test file). `hold <root>` opens the backend and
 * waits; `churn <root> <driver> <seed>` creates leases, snapshots and blobs in a loop, printing one
 * line per finished step, until it is killed.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openEmbeddedBackend } from '../../src/embedded/index.js';

const [mode = '', root = '', driver = 'native', seedArg = '1'] = process.argv.slice(2);

async function churn(): Promise<void> {
  const b = await openEmbeddedBackend({ root, snapshotter: driver as 'native' | 'overlayfs' });
  let seed = Number(seedArg);
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const parents: string[] = [];
  for await (const info of b.snapshotter.walk(['kind==committed'])) parents.push(info.name);
  for (let i = 0; ; i++) {
    const id = `${seedArg}-${i}`;
    const lease = `l-${id}`;
    await b.leases.create(lease, { 'containerd.io/gc.flat': 'x' });
    const parent = parents.length && rand(2) ? parents[rand(parents.length)] : undefined;
    const mounts = await b.snapshotter.prepare(`a-${id}`, parent, { lease });
    const m = await b.mounter.mount(mounts);
    await writeFile(join(m.target, `marker-${id}`), id);
    await m.unmount();
    await b.snapshotter.commit(`c-${id}`, `a-${id}`, { lease, labels: { marker: id } });
    parents.push(`c-${id}`);
    const w = await b.content.writer(`w-${id}`, { lease });
    for (let k = 0; k < 4; k++) await w.write(Buffer.alloc(64 * 1024, id));
    await w.commit({ labels: { marker: id } });
    const drop = rand(4) === 0;
    if (drop) await b.leases.delete(lease, { sync: rand(2) === 0 });
    process.stdout.write(`${drop ? 'dropped' : 'kept'} ${id}\n`);
  }
}

async function hold(): Promise<void> {
  await openEmbeddedBackend({ root });
  process.stdout.write('open\n');
  setInterval(() => undefined, 1 << 30); // stay alive holding the lock until killed
}

if (mode === 'hold') await hold();
else if (mode === 'churn') await churn();
else throw new Error(`unknown mode ${mode}`);
