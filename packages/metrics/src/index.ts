/**
 * One Prometheus registry for all of buildcache (not prom-client's global default), so a process
 * embedding several buildcache packages exposes one consistent set of metrics. Packages define
 * their metrics with `counter` / `histogram` / `gauge` (idempotent by name), the daemon exposes
 * them with `metricsText()` or `serveMetrics('127.0.0.1:PORT')`. prom-client is loaded only when
 * metrics are read or a histogram observes (lazy.ts), not by a process that only counts.
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { CounterMetric, GaugeMetric, HistogramMetric, define, promClient, sharedRegistry, type MetricSpec } from './lazy.js';

export { CounterMetric, GaugeMetric, HistogramMetric, type LabelValues, type MetricSpec } from './lazy.js';

/**
 * The shared prom-client registry (loads prom-client): pass it as `registers: [metricsRegistry()]`
 * when building a metric by hand.
 */
export function metricsRegistry(): Registry {
  return sharedRegistry();
}

/** A counter on the shared registry; a second call with the same name returns the first one. */
export function counter<L extends string = string>(spec: MetricSpec<L>): CounterMetric<L> {
  return define(spec.name, CounterMetric<L>, () => new CounterMetric<L>(spec));
}

/** A gauge on the shared registry; a second call with the same name returns the first one. */
export function gauge<L extends string = string>(spec: MetricSpec<L>): GaugeMetric<L> {
  return define(spec.name, GaugeMetric<L>, () => new GaugeMetric<L>(spec));
}

/** A histogram on the shared registry (buckets in the metric's unit); idempotent by name like `counter`. */
export function histogram<L extends string = string>(spec: MetricSpec<L> & { readonly buckets?: number[] }): HistogramMetric<L> {
  return define(spec.name, HistogramMetric<L>, () => new HistogramMetric<L>(spec));
}

/** The Prometheus text exposition of every metric on the shared registry. */
export function metricsText(): Promise<string> {
  return sharedRegistry().metrics();
}

/** A running `/metrics` listener. */
export interface MetricsServer {
  /** Host and port it listens on (`127.0.0.1:PORT`, the real port when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

let processMetrics = false;

/**
 * Adds prom-client's process metrics (CPU, memory, handles, GC, and the event-loop delay:
 * `nodejs_eventloop_lag_{max,p99,…}_seconds` since the previous scrape) to the shared registry, once.
 */
export function collectProcessMetrics(): void {
  if (processMetrics) return;
  processMetrics = true;
  promClient().collectDefaultMetrics({ register: sharedRegistry(), eventLoopMonitoringPrecision: 10 });
}

/**
 * Serves `GET /metrics` on a loopback address (`127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT`;
 * port 0 picks a free one). Anything else answers 404. Non-loopback hosts are refused. The
 * process's own metrics (`collectProcessMetrics`) are served too.
 */
export async function serveMetrics(address: string): Promise<MetricsServer> {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const host = m?.[1] ?? m?.[2];
  if (!m || host === undefined || !LOOPBACK.has(host)) {
    throw new ErrInvalidArgument(`metrics address ${JSON.stringify(address)} must be a loopback HOST:PORT (e.g. 127.0.0.1:9464)`, { details: { id: address } });
  }
  collectProcessMetrics();
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metricsText().then(
      (text) => res.writeHead(200, { 'content-type': sharedRegistry().contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[3]), host, () => resolve());
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : Number(m[3]);
  return {
    address: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
