/** The resolve hook of module-log.ts (runs on node's hooks thread). */
import { appendFileSync } from 'node:fs';

type Resolved = { url: string };

/** Resolves as node does, then appends the URL to `$BUILDCACHE_TEST_MODULE_LOG`. */
export async function resolve(specifier: string, context: unknown, next: (s: string, c: unknown) => Promise<Resolved>): Promise<Resolved> {
  const resolved = await next(specifier, context);
  const log = process.env['BUILDCACHE_TEST_MODULE_LOG'];
  // synchronous: the hooks thread has nothing else to do, and every line is written before the module loads
  if (log) appendFileSync(log, `${resolved.url}\n`);
  return resolved;
}
