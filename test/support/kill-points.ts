/**
 * Kill points for the crash workers: wraps an object's methods so that a callback (the worker's
 * "die here if this is the chosen point") runs just before each call is issued and just after it
 * settles.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** Set while a wrapped call runs: the calls it makes of itself are not kill points. */
const inside = new AsyncLocalStorage<boolean>();

/**
 * Makes the methods `names` of `obj` (every method, own and inherited, when omitted) a pair of kill
 * points calling `point`. With `nests: false`, calls made inside a wrapped call still count.
 */
export function instrument(obj: object, point: () => void, options: { readonly names?: readonly string[]; readonly nests?: boolean } = {}): void {
  const names = new Set<string>(options.names ?? []);
  if (!options.names) {
    for (let p: object | null = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
      for (const name of Object.getOwnPropertyNames(p)) if (name !== 'constructor') names.add(name);
    }
  }
  const nests = options.nests ?? true;
  const target = obj as Record<string, unknown>;
  for (const name of names) {
    const fn = target[name];
    if (typeof fn !== 'function') continue;
    target[name] = (...args: unknown[]): unknown => {
      const call = (): unknown => (fn as (...a: unknown[]) => unknown).apply(obj, args);
      if (inside.getStore()) return call();
      point();
      const result = nests ? inside.run(true, call) : call();
      if (!(result instanceof Promise)) return result;
      return result.then(
        (v: unknown) => {
          point();
          return v;
        },
        (err: unknown) => {
          point();
          throw err;
        },
      );
    };
  }
}
