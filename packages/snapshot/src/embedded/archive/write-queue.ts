/**
 * The applier's write queue: small files, new directories, symlinks and directory metadata are
 * gathered into batches that `writeEntries` (@buildcache/sys) applies in one thread-pool job each,
 * in order within a batch, while the reader goes on. A batch starts once the batches creating the
 * parent directories of its entries are done; nothing else orders them, as the applier queues no
 * two writes of one path (a name seen again, and every other filesystem access of the applier,
 * drains the queue first: `drain()`), and directory metadata is queued after a drain.
 */
import { join } from 'node:path';
import { writeEntries } from '@buildcache/sys';
import type { EntryWrite } from '@buildcache/sys';

/** Items in one batch. */
const BATCH_ITEMS = 256;
/** File bytes in one batch. */
const BATCH_BYTES = 4 << 20;
/** Batches submitted and not yet done: bounds memory to ~this × BATCH_BYTES, leaves pool threads to gunzip. */
const IN_FLIGHT = 3;

const parentOf = (path: string): string => path.slice(0, Math.max(0, path.lastIndexOf('/')));

/** Batches of entry writes under one root. */
export class WriteQueue {
  private items: EntryWrite[] = [];
  private names: string[] = [];
  private bytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /** Directories created by batches not yet done, with the batch. */
  private readonly creating = new Map<string, Promise<void>>();
  private failure: unknown;

  /** `fail` turns a batch's error into the applier's error for the entry that failed. */
  constructor(
    private readonly root: string,
    private readonly fail: (err: unknown, entry: string) => unknown,
  ) {}

  /** Queues `item` (written for layer entry `entry`); waits while too many batches are in flight. */
  async add(item: EntryWrite, entry: string): Promise<void> {
    if (this.failure) throw this.failure;
    this.items.push(item);
    this.names.push(entry);
    if (item.kind === 0) this.bytes += item.data.length;
    if (this.items.length >= BATCH_ITEMS || this.bytes >= BATCH_BYTES) await this.submit();
  }

  /** Writes everything queued; throws the first failure. */
  async drain(): Promise<void> {
    await this.submit();
    await this.settle();
    if (this.failure) throw this.failure;
  }

  /** Waits for every submitted batch without throwing (also after a failure elsewhere). */
  async settle(): Promise<void> {
    this.items = [];
    this.names = [];
    this.bytes = 0;
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  private async submit(): Promise<void> {
    if (this.items.length > 0) {
      const items = this.items;
      const names = this.names;
      this.items = [];
      this.names = [];
      this.bytes = 0;
      const deps = new Set<Promise<void>>();
      for (const it of items) {
        const dep = this.creating.get(parentOf(String(it.path)));
        if (dep) deps.add(dep);
      }
      const run = async (): Promise<void> => {
        await Promise.all(deps);
        if (this.failure) return;
        try {
          await writeEntries(this.root, items);
        } catch (err) {
          const e = err as NodeJS.ErrnoException & { index?: number };
          if (typeof e.path === 'string') e.path = join(this.root, e.path); // the host path, for the debug log
          this.failure ??= this.fail(err, names[e.index ?? -1] ?? names[0]!);
        }
      };
      const p = run();
      this.inFlight.add(p);
      const dirs = items.filter((it) => it.kind === 1).map((it) => String(it.path));
      for (const d of dirs) this.creating.set(d, p);
      void p.then(() => {
        this.inFlight.delete(p);
        for (const d of dirs) if (this.creating.get(d) === p) this.creating.delete(d);
      });
    }
    while (this.inFlight.size >= IN_FLIGHT) await Promise.race(this.inFlight);
  }
}
