/**
 * Storage for Istio's per-request and per-connection series, apart from prom-client: one record
 * per label set, holding plain numbers (counters) and typed arrays (histogram buckets), with the
 * label set's exposition text (`reporter="source",...`) rendered once, when the record is made.
 * Counting a request is then a few additions and a search through 19 bounds; prom-client would
 * hash 25 labels for each of 4 metrics. Written out at scrape (exposition.ts) straight into
 * Buffers, in prom-client's text, each family with one `# HELP` / `# TYPE`.
 *
 * Values prom-client would refuse (a counter going down, a non-finite observation) are not
 * counted: a telemetry subscriber must not throw into the proxy's publish().
 */
import { encodeLabels, histogramOpen, writeHeader, writeHistogram, writeSample, type EncodedLabels, type Family } from './exposition';
import type { ExpositionWriter } from './exposition-writer';

/** Envoy's default histogram bounds (Istio sets none of its own): ms for durations, bytes for sizes. */
export const ISTIO_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000] as const;
/** slots per histogram: one per bound and one above them all (+Inf) */
const SLOTS = ISTIO_BUCKETS.length + 1;

/** The slot of ISTIO_BUCKETS a value falls in (the first bound it does not exceed; the last slot above all). */
export function bucketOf(v: number): number {
  let i = 0;
  while (i < ISTIO_BUCKETS.length && v > ISTIO_BUCKETS[i]!) i++;
  return i;
}

export const FAMILIES = {
  requests: { name: 'istio_requests_total', help: 'Requests, counted at their end', type: 'counter' },
  duration: { name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds', type: 'histogram' },
  requestBytes: { name: 'istio_request_bytes', help: 'Request body size in bytes', type: 'histogram' },
  responseBytes: { name: 'istio_response_bytes', help: 'Response body size in bytes', type: 'histogram' },
  tcpSent: { name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent back to the client (server to client)', type: 'counter' },
  tcpReceived: { name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client (client to server)', type: 'counter' },
  tcpOpened: { name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', type: 'counter' },
  tcpClosed: { name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', type: 'counter' },
} as const satisfies Record<string, Family>;

/** A label set's record: its labels (for pruning) and their exposition text, encoded once. */
export interface Series<L> { readonly labels: L; readonly text: EncodedLabels }

/** `n` is a sample a counter may add (finite, not negative). */
const countable = (n: number): boolean => n >= 0 && n !== Infinity;

/** One HTTP/gRPC label set: istio_requests_total and the three histograms. */
export class HttpSeries<L extends Record<string, string> = Record<string, string>> implements Series<L> {
  readonly text: EncodedLabels;
  requests = 0;
  /** per histogram (duration, request bytes, response bytes): SLOTS non-cumulative bucket counts */
  readonly buckets = new Float64Array(3 * SLOTS);
  /** per histogram: sum, then count */
  readonly sums = new Float64Array(6);

  constructor(readonly labels: L) {
    this.text = encodeLabels(labels);
  }

  /** One request at its end. */
  count(durationMs: number, requestBytes: number, responseBytes: number): void {
    this.requests++;
    this.observe(0, durationMs);
    this.observe(1, requestBytes);
    this.observe(2, responseBytes);
  }

  private observe(h: number, v: number): void {
    if (!Number.isFinite(v)) return;
    this.buckets[h * SLOTS + bucketOf(v)]!++;
    this.sums[h * 2] += v;
    this.sums[h * 2 + 1]!++;
  }
}

/** One TCP label set: the four connection counters (all present from the first event, as Istio's). */
export class TcpSeries<L extends Record<string, string> = Record<string, string>> implements Series<L> {
  readonly text: EncodedLabels;
  opened = 0;
  closed = 0;
  received = 0;
  sent = 0;

  constructor(readonly labels: L) {
    this.text = encodeLabels(labels);
  }

  open(): void {
    this.opened++;
  }

  close(bytesFromClient: number, bytesToClient: number): void {
    this.closed++;
    if (countable(bytesFromClient)) this.received += bytesFromClient;
    if (countable(bytesToClient)) this.sent += bytesToClient;
  }
}

/** One counter's label set. */
export class CounterSeries<L extends Record<string, string> = Record<string, string>> implements Series<L> {
  readonly text: EncodedLabels;
  value = 0;

  constructor(readonly labels: L) {
    this.text = encodeLabels(labels);
  }

  inc(n = 1): void {
    if (countable(n)) this.value += n;
  }
}

/** Records by a key of their label values, in the order they were first written (prom-client's order). */
export class SeriesTable<S extends Series<Record<string, string>>> {
  private readonly byKey = new Map<string, S>();

  constructor(private readonly make: (labels: S['labels']) => S) {}

  /** The record of `labels` (keyed by `key`, their values in a fixed order), made on first use. */
  get(key: string, labels: S['labels']): S {
    let s = this.byKey.get(key);
    if (!s) this.byKey.set(key, (s = this.make(labels)));
    return s;
  }

  /** Removes the records whose labels `gone` names; returns how many. */
  prune(gone: (labels: S['labels']) => boolean): number {
    let removed = 0;
    for (const [key, s] of this.byKey) {
      if (!gone(s.labels)) continue;
      this.byKey.delete(key);
      removed++;
    }
    return removed;
  }

  clear(): void {
    this.byKey.clear();
  }

  get size(): number {
    return this.byKey.size;
  }

  values(): IterableIterator<S> {
    return this.byKey.values();
  }
}

/**
 * Called between slices of a family's series while writing (a scrape of 1,000 pod pairs takes
 * ~200 ms of the event loop the proxy shares): resolves when the writing may go on.
 */
export type Pause = () => Promise<void>;
/** series written between pauses: ~64 histogram series are ~1.2 MiB, a millisecond or two */
export const SLICE = 64;

/** Writes a counter family: its header, then one sample per record. */
export async function writeCounterFamily<S extends Series<Record<string, string>>>(w: ExpositionWriter, f: Family, table: SeriesTable<S>, value: (s: S) => number, pause?: Pause): Promise<void> {
  writeHeader(w, f);
  const open = `${f.name}{`;
  let n = 0;
  for (const s of table.values()) {
    writeSample(w, open, f.name, s.text, value(s));
    if (pause && ++n % (SLICE * 16) === 0) await pause();
  }
}

const OPEN = {} as Record<string, ReturnType<typeof histogramOpen>>;

/** Writes histogram `h` (0 duration, 1 request bytes, 2 response bytes) of every HTTP record. */
export async function writeHistogramFamily<L extends Record<string, string>>(w: ExpositionWriter, f: Family, table: SeriesTable<HttpSeries<L>>, h: 0 | 1 | 2, pause?: Pause): Promise<void> {
  writeHeader(w, f);
  const open = (OPEN[f.name] ??= histogramOpen(f.name, ISTIO_BUCKETS));
  let n = 0;
  for (const s of table.values()) {
    writeHistogram(w, open, s.text, s.buckets, h * SLOTS, s.sums[h * 2]!, s.sums[h * 2 + 1]!);
    if (pause && ++n % SLICE === 0) await pause();
  }
}
