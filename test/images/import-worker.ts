/**
 * A process that imports one archive into an image store and kills itself (SIGKILL) at the import's
 * `killAt`-th progress event; without `killAt` it imports to the end and prints `events N`.
 */
import { createReadStream } from 'node:fs';
import { openBackendSpec, type BackendSpec } from '../support/backends.js';
import { Stack } from './helpers.js';

const cfg = JSON.parse(process.argv[2]!) as { spec: BackendSpec; dir: string; archive: string; killAt?: number };
const backend = await openBackendSpec(cfg.spec);
const stack = await Stack.open(backend, cfg.dir);
let events = 0;
await stack.images.import(createReadStream(cfg.archive), {
  onProgress: () => {
    if (events++ === cfg.killAt) process.kill(process.pid, 'SIGKILL');
  },
});
await stack.close();
await backend.close();
process.stdout.write(`events ${events}\n`);
