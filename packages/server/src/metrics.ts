/** The daemon's metrics, on buildcache's shared registry (served by `--metrics`). */
import { counter, gauge, histogram } from '@buildcache/metrics';

/** Calls answered, by method (`Control/DiskUsage`, `Cache/Prune`, …) and gRPC status code name. */
export const callsTotal = counter<'method' | 'code'>({
  name: 'buildcache_server_calls_total',
  help: 'Calls the daemon answered, by method and gRPC status code',
  labelNames: ['method', 'code'],
});

/** Duration of answered calls, by method. */
export const callSeconds = histogram<'method'>({
  name: 'buildcache_server_call_duration_seconds',
  help: 'Time from a call arriving to its last reply, by method',
  labelNames: ['method'],
  buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
});

/** Calls being served now. */
export const callsInFlight = gauge({
  name: 'buildcache_server_calls_in_flight',
  help: 'Calls the daemon is serving now',
});

/** Messages streamed to clients (usage records of du and prune, hold answers), by method. */
export const recordsSent = counter<'method'>({
  name: 'buildcache_server_stream_messages_total',
  help: 'Messages streamed to clients, by method',
  labelNames: ['method'],
});
