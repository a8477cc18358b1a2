/**
 * Build progress as `docker build` shows it: `plain` prints one block per step (`#N [i/n] RUN …`,
 * its output lines with their time, then `#N CACHED` or `#N DONE 0.4s`); `tty` redraws a live view
 * in place (`[+] Building 1.2s (3/5)`, one line per step, the running step's last output lines).
 */
import type { Writable } from 'node:stream';

/** Progress modes of `--progress`. */
export type ProgressMode = 'plain' | 'tty' | 'quiet';

/** One step (BuildKit calls it a vertex) as progress shows it. */
export interface Vertex {
  log(line: string): void;
  cached(): void;
  done(): void;
  error(message: string): void;
}

/** Where a build reports its steps. */
export interface Progress {
  /** Starts showing a step named `name` (`[2/5] COPY . /`). */
  vertex(name: string): Vertex;
  /** Final redraw; stops any timer. */
  close(): void;
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1) + 's';

/** `--progress plain`: append-only blocks. */
class PlainProgress implements Progress {
  private n = 0;
  constructor(private readonly out: Writable) {}

  vertex(name: string): Vertex {
    const id = ++this.n;
    const started = Date.now();
    this.out.write(`#${id} ${name}\n`);
    const end = (line: string): void => void this.out.write(`#${id} ${line}\n\n`);
    return {
      log: (line) => void this.out.write(`#${id} ${((Date.now() - started) / 1000).toFixed(3)} ${line}\n`),
      cached: () => end('CACHED'),
      done: () => end(`DONE ${seconds(Date.now() - started)}`),
      error: (message) => end(`ERROR: ${message}`),
    };
  }

  close(): void {}
}

interface TtyRow {
  name: string;
  started: number;
  ended?: number;
  state: 'running' | 'cached' | 'done' | 'error';
  tail: string[];
}

const TAIL = 6;

/** `--progress tty`: a view redrawn in place (cursor up, clear line) at most ten times a second. */
class TtyProgress implements Progress {
  private readonly rows: TtyRow[] = [];
  private readonly started = Date.now();
  private drawn = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly out: Writable & { columns?: number }) {
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  vertex(name: string): Vertex {
    const row: TtyRow = { name, started: Date.now(), state: 'running', tail: [] };
    this.rows.push(row);
    const end = (state: TtyRow['state']): void => {
      row.state = state;
      row.ended = Date.now();
      this.draw();
    };
    return {
      log: (line) => {
        row.tail.push(line);
        if (row.tail.length > TAIL) row.tail.shift();
      },
      cached: () => end('cached'),
      done: () => end('done'),
      error: (message) => {
        row.tail.push(`ERROR: ${message}`);
        end('error');
      },
    };
  }

  private draw(): void {
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const clip = (s: string): string => (s.length > width ? s.slice(0, width - 1) + '…' : s);
    const finished = this.rows.filter((r) => r.state !== 'running').length;
    const lines = [`[+] Building ${seconds(Date.now() - this.started)} (${finished}/${this.rows.length})`];
    for (const r of this.rows) {
      const time = r.state === 'cached' ? '' : seconds((r.ended ?? Date.now()) - r.started);
      const label = r.state === 'cached' ? `CACHED ${r.name}` : r.state === 'error' ? `ERROR ${r.name}` : r.name;
      const left = ` => ${label}`;
      lines.push(clip(left + ' '.repeat(Math.max(1, width - left.length - time.length)) + time));
      if (r.state === 'running' || r.state === 'error') for (const t of r.tail) lines.push(clip(` => => # ${t}`));
    }
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const l of lines) s += `\x1b[2K${l}\n`;
    for (let i = lines.length; i < this.drawn; i++) s += '\x1b[2K\n';
    this.drawn = Math.max(lines.length, this.drawn);
    this.out.write(s);
  }

  close(): void {
    clearInterval(this.timer);
    this.draw();
  }
}

class QuietProgress implements Progress {
  vertex(): Vertex {
    return { log() {}, cached() {}, done() {}, error() {} };
  }
  close(): void {}
}

/** A progress writer on `out` (`auto` is resolved by the caller: tty when `out` is a terminal). */
export function createProgress(mode: ProgressMode, out: Writable): Progress {
  if (mode === 'tty') return new TtyProgress(out);
  if (mode === 'quiet') return new QuietProgress();
  return new PlainProgress(out);
}
