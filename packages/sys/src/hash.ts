/**
 * sha256 of a byte stream computed on the libuv thread pool (the addon's `sha256Update`, OpenSSL's
 * EVP as linked into Node), so that hashing a layer takes no time on the event loop.
 */
import { native } from './native.js';

/** Bytes gathered before one pool job hashes them. */
const BATCH_BYTES = 1 << 20;
/** Jobs submitted and not done before `update` waits (bounds the bytes held to ~this × BATCH_BYTES). */
const MAX_JOBS = 4;

/**
 * A sha256 whose `update` hashes on the thread pool. The chunks are held, not copied, until hashed:
 * the caller must not change them afterwards (as for stream chunks). Updates are hashed in order.
 */
export class PoolSha256 {
  readonly #state = native().sha256New();
  #waiting: Uint8Array[] = [];
  #waitingBytes = 0;
  #tail: Promise<void> = Promise.resolve();
  readonly #jobs: Promise<void>[] = [];

  /** Adds `chunk`; resolves at once unless too many jobs are still hashing. */
  async update(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return;
    this.#waiting.push(chunk);
    this.#waitingBytes += chunk.length;
    if (this.#waitingBytes >= BATCH_BYTES) this.#submit();
    while (this.#jobs.length > MAX_JOBS) await this.#jobs[0];
  }

  /** The lowercase hex digest of everything added (no update after it). */
  async digest(): Promise<string> {
    this.#submit();
    await this.#tail;
    return native().sha256Digest(this.#state);
  }

  #submit(): void {
    if (this.#waiting.length === 0) return;
    const chunks = this.#waiting;
    this.#waiting = [];
    this.#waitingBytes = 0;
    const job = this.#tail.then(() => native().sha256Update(this.#state, chunks));
    this.#tail = job;
    this.#jobs.push(job);
    // jobs finish in order: the first one listed is the one that settled (its failure surfaces from `digest`)
    job.then(() => this.#jobs.shift(), () => this.#jobs.shift());
  }
}
