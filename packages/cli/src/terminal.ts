/** The command's streams: stdout that may close early (`| head`), a TTY progress line, a confirmation prompt. */
import { createInterface } from 'node:readline/promises';

/** Standard output that notices when the reader went away and then drops further writes. */
export class Output {
  private closedFlag = false;
  private readonly listeners: (() => void)[] = [];

  constructor(private readonly stream: NodeJS.WriteStream = process.stdout) {
    // EPIPE when the reader is gone; any other write error leaves nothing to write to either.
    stream.on('error', () => {
      this.closedFlag = true;
      for (const fn of this.listeners.splice(0)) fn();
    });
  }

  /** True once the reader has closed the pipe. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Calls `fn` once the reader closes the pipe. */
  onClose(fn: () => void): void {
    if (this.closedFlag) fn();
    else this.listeners.push(fn);
  }

  write(text: string): void {
    if (!this.closedFlag) this.stream.write(text);
  }
}

/** A one-line status on a TTY (stderr), kept below the rows printed to stdout; a no-op elsewhere. */
export class Progress {
  private text = '';
  private lastDraw = 0;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** Sets the status and draws it (at most every 100 ms when `throttle`). */
  update(text: string, throttle = false): void {
    this.text = text;
    if (!this.stream.isTTY) return;
    const now = Date.now();
    if (throttle && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.stream.write(`\r\x1b[2K${text}`);
  }

  /** Prints `row` (to `out`) above the status line, then draws the status again. */
  row(out: Output, row: string): void {
    if (!this.stream.isTTY || !this.text) {
      out.write(row);
      return;
    }
    this.stream.write('\r\x1b[2K');
    out.write(row);
    this.stream.write(this.text);
  }

  /** Ends the status line with a newline, so it stays visible (also when interrupted). */
  end(): void {
    if (this.stream.isTTY && this.text) this.stream.write(`\r\x1b[2K${this.text}\n`);
    this.text = '';
  }

  /** Removes the status line. */
  clear(): void {
    if (this.stream.isTTY && this.text) this.stream.write('\r\x1b[2K');
    this.text = '';
  }
}

/** True when stdin and stderr are a terminal, so a question can be asked and answered. */
export function canAsk(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

/** Asks a yes/no question on the terminal; only `y` or `yes` is yes (Ctrl-C is no). */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const ctrlC = new AbortController();
  rl.on('SIGINT', () => ctrlC.abort());
  try {
    const answer = await rl.question(`${question} [y/N] `, { signal: ctrlC.signal });
    return /^y(es)?$/i.test(answer.trim());
  } catch (err) {
    if (ctrlC.signal.aborted) return false;
    throw err;
  } finally {
    rl.close();
  }
}
