/**
 * Child process of step-crash.test.ts: opens the cache at argv[2]'s `root` and its frontend, then
 * builds `context`, SIGKILLing itself at kill point `killAt`. Kill points are the awaited calls of
 * the backend (snapshotter, content, leases, applier, differ) and every metadata commit, just before
 * each is issued and just after it resolves, counted from the build's start to the step's key
 * commit (the image export after it is not the step's). Without `killAt` it builds to the end and
 * prints `events <n>` and the image digest.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { join } from 'node:path';
import { pino } from 'pino';
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

/** Set while an instrumented call runs: the calls it makes of itself are not kill points. */
const inside = new AsyncLocalStorage<boolean>();

function instrument(obj: object): void {
  const names = new Set<string>();
  for (let p: object | null = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const name of Object.getOwnPropertyNames(p)) if (name !== 'constructor') names.add(name);
  }
  const target = obj as Record<string, unknown>;
  for (const name of names) {
    const fn = target[name];
    if (typeof fn !== 'function') continue;
    target[name] = (...args: unknown[]): unknown => {
      const call = (): unknown => (fn as (...a: unknown[]) => unknown).apply(obj, args);
      if (inside.getStore()) return call();
      point();
      const result = inside.run(true, call);
      if (!(result instanceof Promise)) return result;
      return result.then((v: unknown) => (point(), v), (err: unknown) => (point(), Promise.reject(err)));
    };
  }
}

const silent = pino({ level: 'silent' });
const { cache, backend, close } = await openCache({ root: cfg.root, logger: silent });
for (const part of [backend.snapshotter, backend.content, backend.leases, backend.applier, backend.differ]) instrument(part);
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
