/**
 * The applier's ordered write queue: small files, new directories, symlinks and directory metadata
 * are gathered into batches that `writeEntries` (@buildcache/sys) applies in one job each, one
 * batch after the other, so the filesystem sees them in layer order while the reader goes on. Work
 * that must follow an entry's creation (its xattrs) rides with the batch (`after()`). Every other
 * filesystem access of the applier drains the queue first (`drain()`).
 */
import { join } from 'node:path';
import { ENTRY, writeEntries } from '@buildcache/sys';
import type { EntryWrite } from '@buildcache/sys';

/** Items in one batch. */
const BATCH_ITEMS = 256;
/** File bytes in one batch. */
const BATCH_BYTES = 4 << 20;
/** Batches submitted and not yet done (one runs, the others wait): bounds memory to ~this × BATCH_BYTES. */
const IN_FLIGHT = 3;

/** Batches of entry writes under one root, applied strictly in order. */
export class WriteQueue {
  private items: EntryWrite[] = [];
  private names: string[] = [];
  private afters: { readonly fn: () => Promise<void>; readonly entry: string }[] = [];
  private bytes = 0;
  private readonly inFlight: Promise<void>[] = [];
  private tail: Promise<void> = Promise.resolve();
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
    if (item.kind === ENTRY.FILE) this.bytes += item.data.length;
    if (this.items.length >= BATCH_ITEMS || this.bytes >= BATCH_BYTES) await this.submit();
  }

  /**
   * Runs `fn` (for layer entry `entry`) once every item queued so far is written, before any item
   * queued later; its failure is the queue's, as a batch's.
   */
  after(fn: () => Promise<void>, entry: string): void {
    this.afters.push({ fn, entry });
  }

  /** Writes everything queued; throws the first failure. */
  async drain(): Promise<void> {
    await this.submit();
    await this.tail;
    if (this.failure) throw this.failure;
  }

  /** Waits for every submitted batch without throwing (after a failure elsewhere). */
  async settle(): Promise<void> {
    this.items = [];
    this.names = [];
    this.afters = [];
    await this.tail;
  }

  private async submit(): Promise<void> {
    if (this.items.length > 0 || this.afters.length > 0) {
      const items = this.items;
      const names = this.names;
      const afters = this.afters;
      this.items = [];
      this.names = [];
      this.afters = [];
      this.bytes = 0;
      const run = async (): Promise<void> => {
        if (this.failure) return;
        try {
          if (items.length > 0) await writeEntries(this.root, items);
        } catch (err) {
          const e = err as NodeJS.ErrnoException & { index?: number };
          if (typeof e.path === 'string') e.path = join(this.root, e.path); // the host path, for the debug log
          this.failure ??= this.fail(err, names[e.index ?? -1] ?? names[0]!);
          return;
        }
        for (const { fn, entry } of afters) {
          try {
            await fn();
          } catch (err) {
            this.failure ??= this.fail(err, entry);
            return;
          }
        }
      };
      const p = this.tail.then(run);
      this.tail = p;
      this.inFlight.push(p);
      void p.then(() => this.inFlight.splice(this.inFlight.indexOf(p), 1));
    }
    while (this.inFlight.length >= IN_FLIGHT) await this.inFlight[0];
  }
}
