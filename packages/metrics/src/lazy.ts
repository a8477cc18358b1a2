/**
 * Metrics that load prom-client only when it is needed: a counter or gauge keeps its values in a
 * small map until the shared registry is first read (`metricsText`, `serveMetrics`, a metric's
 * `get`), then hands them to a prom-client metric and forwards to it from then on; a histogram loads
 * prom-client at its first observation. A process that only updates counters (a cache opened by a
 * tool or a benchmark) never loads prom-client (~1 MiB of heap and ~3 MiB of resident code).
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';
import { ErrInvalidArgument } from '@buildcache/errdefs';

/** Name, help text and label names of a metric. */
export interface MetricSpec<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** Label values of one series. */
export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

const requireCjs = createRequire(import.meta.url);
let registry: Prom.Registry | undefined;
/** Every metric defined, by name (what `counter` & co. return for a name defined before). */
const defined = new Map<string, LazyMetric<string, Prom.Metric>>();

/** prom-client (CommonJS, so loaded synchronously on first call). */
export function promClient(): typeof Prom {
  return requireCjs('prom-client') as typeof Prom;
}

/** The shared registry: made (loading prom-client) on first call, with every metric defined so far. */
export function sharedRegistry(): Prom.Registry {
  if (registry) return registry;
  registry = new (promClient().Registry)();
  for (const m of defined.values()) m.real();
  return registry;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** One metric: its prom-client twin once made, and the checks every update goes through. */
abstract class LazyMetric<L extends string, M extends Prom.Metric> {
  #real: M | undefined;
  readonly labelNames: readonly L[];

  constructor(readonly spec: MetricSpec<L>) {
    this.labelNames = spec.labelNames ?? [];
    if (!METRIC_NAME.test(spec.name)) throw new ErrInvalidArgument(`invalid metric name ${JSON.stringify(spec.name)}`, { details: { id: spec.name } });
    for (const l of this.labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new ErrInvalidArgument(`invalid label name ${JSON.stringify(l)} of metric ${spec.name}`, { details: { id: spec.name } });
    }
  }

  /** The prom-client metric, made on first call (registering it and handing it the values kept so far). */
  real(): M {
    if (this.#real) return this.#real;
    const reg = sharedRegistry(); // The first call makes every metric defined, this one too.
    if (this.#real) return this.#real;
    const real = this.make(promClient(), reg);
    this.#real = real;
    this.handOver(real);
    return real;
  }

  /** The prom-client metric if it is made. */
  protected get made(): M | undefined {
    return this.#real;
  }

  /** The metric's current values, as prom-client reports them (makes it). */
  get(): ReturnType<M['get']> {
    return this.real().get() as ReturnType<M['get']>;
  }

  /** What prom-client's metric constructors take: name, help, label names, and `registry`. */
  protected options(registry: Prom.Registry): { name: string; help: string; labelNames: readonly L[]; registers: Prom.Registry[] } {
    return { name: this.spec.name, help: this.spec.help, labelNames: this.labelNames, registers: [registry] };
  }

  protected abstract make(prom: typeof Prom, registry: Prom.Registry): M;
  /** Gives the values kept before the prom-client metric existed to it, and forgets them. */
  protected abstract handOver(real: M): void;

  /** Refuses label names the metric was not defined with (as prom-client does). */
  protected check(labels: LabelValues<L>): void {
    for (const k of Object.keys(labels)) {
      if (!(this.labelNames as readonly string[]).includes(k)) {
        throw new ErrInvalidArgument(`metric ${this.spec.name} has no label ${JSON.stringify(k)}`, { details: { id: this.spec.name, entry: k } });
      }
    }
  }
}

/** The key of one series in the values kept before prom-client is loaded. */
const seriesKey = (labels: LabelValues<string>): string =>
  JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** Splits prom-client's `(labels, value)` / `(value)` arguments. */
function args<L extends string>(a: LabelValues<L> | number | undefined, b: number | undefined, dflt: number | undefined): [LabelValues<L>, number | undefined] {
  return typeof a === 'object' ? [a, b ?? dflt] : [{}, a ?? dflt];
}

function finite(name: string, value: number | undefined): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ErrInvalidArgument(`metric ${name}: value ${String(value)} is not a finite number`, { details: { id: name } });
  }
  return value;
}

/**
 * A counter or gauge: its values by series are kept in a map until the prom-client metric is made,
 * then added to it (a new prom-client series starts at 0, so adding the kept value sets it).
 */
abstract class SeriesMetric<L extends string, M extends Prom.Counter<L> | Prom.Gauge<L>> extends LazyMetric<L, M> {
  #kept: Map<string, { labels: LabelValues<L>; value: number }> | undefined = new Map();

  /** Adds `delta` to the series of `labels`. */
  protected add(labels: LabelValues<L>, delta: number): void {
    this.check(labels);
    if (this.made) {
      this.made.inc(labels, delta);
      return;
    }
    const key = seriesKey(labels);
    const s = this.#kept!.get(key);
    if (s) s.value += delta;
    else this.#kept!.set(key, { labels: { ...labels }, value: delta });
  }

  /** Sets the series of `labels` to `value` while the prom-client metric is not made; false once it is. */
  protected keep(labels: LabelValues<L>, value: number): boolean {
    if (this.made) return false;
    this.#kept!.set(seriesKey(labels), { labels: { ...labels }, value });
    return true;
  }

  protected handOver(real: M): void {
    for (const { labels, value } of this.#kept!.values()) real.inc(labels, value);
    this.#kept = undefined;
  }
}

/** A counter (see prom-client's `Counter`): `inc([labels,] [value])`. */
export class CounterMetric<L extends string = string> extends SeriesMetric<L, Prom.Counter<L>> {
  /** Adds `value` (default 1, never negative) to the series of `labels`. */
  inc(labels?: LabelValues<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 1);
    const n = finite(this.spec.name, v);
    if (n < 0) throw new ErrInvalidArgument(`counter ${this.spec.name} cannot decrease (inc by ${n})`, { details: { id: this.spec.name } });
    this.add(l, n);
  }

  /** The series of `labels`, to increment without naming them each time. */
  labels(labels: LabelValues<L>): { inc(value?: number): void } {
    this.check(labels);
    const fixed = { ...labels };
    return { inc: (value?: number) => this.inc(fixed, value ?? 1) };
  }

  protected make(prom: typeof Prom, registry: Prom.Registry): Prom.Counter<L> {
    return new prom.Counter<L>(this.options(registry));
  }
}

/** A gauge (see prom-client's `Gauge`): `set`, `inc`, `dec`. */
export class GaugeMetric<L extends string = string> extends SeriesMetric<L, Prom.Gauge<L>> {
  /** Sets the series of `labels` to `value`. */
  set(labels: LabelValues<L> | number, value?: number): void {
    const [l, v] = args(labels, value, undefined);
    this.check(l);
    const n = finite(this.spec.name, v);
    if (!this.keep(l, n)) this.made!.set(l, n);
  }

  /** Adds `value` (default 1) to the series of `labels`. */
  inc(labels?: LabelValues<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 1);
    this.add(l, finite(this.spec.name, v));
  }

  /** Subtracts `value` (default 1) from the series of `labels`. */
  dec(labels?: LabelValues<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 1);
    this.add(l, -finite(this.spec.name, v));
  }

  protected make(prom: typeof Prom, registry: Prom.Registry): Prom.Gauge<L> {
    return new prom.Gauge<L>(this.options(registry));
  }
}

/** A histogram (see prom-client's `Histogram`): `observe([labels,] value)`; loads prom-client at the first one. */
export class HistogramMetric<L extends string = string> extends LazyMetric<L, Prom.Histogram<L>> {
  readonly #buckets: number[] | undefined;

  constructor(spec: MetricSpec<L> & { readonly buckets?: number[] }) {
    super(spec);
    this.#buckets = spec.buckets;
  }

  /** Counts `value` in the series of `labels`. */
  observe(labels: LabelValues<L> | number, value?: number): void {
    const [l, v] = args(labels, value, undefined);
    this.check(l);
    this.real().observe(l, finite(this.spec.name, v));
  }

  protected make(prom: typeof Prom, registry: Prom.Registry): Prom.Histogram<L> {
    return new prom.Histogram<L>({ ...this.options(registry), ...(this.#buckets ? { buckets: this.#buckets } : {}) });
  }

  protected handOver(): void {}
}

/**
 * The metric defined as `name`, or a new one made by `make` (registered on the shared registry
 * at once when it exists). A name defined as another kind of metric is refused.
 */
export function define<M extends LazyMetric<string, Prom.Metric>>(name: string, kind: abstract new (...args: never[]) => M, make: () => M): M {
  const found = defined.get(name);
  if (found !== undefined) {
    if (!(found instanceof kind)) throw new ErrInvalidArgument(`metric ${name} is already registered as another type`, { details: { id: name } });
    return found;
  }
  const m = make();
  defined.set(name, m);
  if (registry) m.real();
  return m;
}
