/** `buildcache serve`: runs the daemon until SIGTERM/SIGINT, then shuts it down gracefully. */
import type { Logger } from 'pino';
import type { OpenCacheOptions } from '@buildcache/cache';
import { Daemon } from '@buildcache/server';
import type { Flags } from './args.js';
import { EXIT } from './usage.js';

/** Serves the cache `options` name at `--addr` until a signal; returns the exit code. */
export async function serve(flags: Flags, options: OpenCacheOptions, logger: Logger): Promise<number> {
  const group = flags.strings.get('group');
  const address = flags.strings.get('addr');
  const metrics = flags.strings.get('metrics');
  const daemon = await Daemon.start({
    cache: options,
    logger,
    gc: flags.booleans.has('gc'),
    ...(address !== undefined ? { address } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(metrics !== undefined ? { metrics } : {}),
  });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  logger.info({ signal }, 'signal received');
  // A second signal stops at once (the cache stays consistent: every commit is atomic).
  const again = (s: NodeJS.Signals): void => {
    logger.warn({ signal: s }, 'second signal: exiting without waiting');
    process.exit(EXIT.interrupted + 1);
  };
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  await daemon.close();
  return EXIT.ok;
}
