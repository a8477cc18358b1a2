/**
 * Child process of the archive tests (not a test file): `<blob> <target> [compression]` applies the
 * layer file `blob` onto `target` with `applyLayer` and prints one JSON line: the result or the
 * error (class, code, message, details), and the process's peak resident memory (`VmHWM`, KiB).
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { applyLayer } from '../../src/embedded/archive/index.js';
import type { Compression } from '../../src/labels.js';

const [blob = '', target = '', compression = 'auto'] = process.argv.slice(2);

async function peakKiB(): Promise<number> {
  return Number(/VmHWM:\s+(\d+)/.exec(await readFile('/proc/self/status', 'utf8'))?.[1] ?? NaN);
}

let result: Record<string, unknown>;
try {
  const r = await applyLayer(createReadStream(blob), target, { compression: compression as Compression | 'auto' });
  result = { ok: true, ...r };
} catch (err) {
  const e = err as Error & { code?: string; details?: unknown };
  result = { ok: false, name: e.name, code: e.code, message: e.message, details: e.details };
}
process.stdout.write(JSON.stringify({ ...result, peakKiB: await peakKiB() }) + '\n');
