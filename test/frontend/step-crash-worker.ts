/**
 * Child process of step-crash.test.ts: opens the cache at argv[2]'s `root` and its frontend, then
 * builds `context`, SIGKILLing itself at kill point `killAt`. Kill points are the awaited calls of
 * the backend (snapshotter, content, leases, applier, differ) and every metadata commit, just before
 * each is issued and just after it resolves, counted from the build's start to the step's key
 * commit (the image export after it is not the step's). Without `killAt` it builds to the end and
 * prints `events <n>` and the image digest.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { instrument } from '../support/kill-points.js';
import { StorageItem } from '@buildcache/metadata';
import { openCache } from '@buildcache/cache';
import { Frontend } from '@buildcache/frontend';

interface Config {
  readonly root: string;
  readonly context: string;
  readonly killAt?: number;
}

const cfg = JSON.parse(process.argv[2]!) as Config;
let armed = false;
let events = 0;

function point(): void {
  if (armed && events++ === cfg.killAt) process.kill(process.pid, 'SIGKILL');
}

const silent = pino({ level: 'silent' });
const { cache, backend, close } = await openCache({ root: cfg.root, logger: silent });
for (const part of [backend.snapshotter, backend.content, backend.leases, backend.applier, backend.differ]) instrument(part, point);
const commit = StorageItem.prototype.commit;
StorageItem.prototype.commit = function (this: StorageItem) {
  point();
  return commit.call(this).then(() => point());
};
const frontend = await Frontend.open({ cache, content: backend.content, root: join(cfg.root, 'frontend'), logger: silent });
const record = cache.keys.record.bind(cache.keys);
cache.keys.record = async (...args) => {
  const key = await record(...args);
  point();
  armed = false;
  return key;
};
armed = true;
const result = await frontend.build({ context: cfg.context });
armed = false;
await close();
process.stdout.write(`events ${events}\ndigest ${result.digest}\n`);
