/**
 * Istio's standard metrics from the events the proxy publishes (events.ts). Names, types, buckets
 * and labels as istio-metrics.md describes them; byte direction as Istio's (received = client →
 * server).
 *
 * The per-request and per-connection series are kept in records of their own (series.ts), one per
 * label set, derived once per connection and outcome: a request on a kept-alive connection costs a
 * cached lookup, a few additions and three bucket searches. They are written into the text of
 * Weft's own registry (exposition-registry.ts) at scrape, after prom-client's families (the agent's
 * health and Weft's gauges), which stay in prom-client.
 *
 * Denials are also counted by their deciding policy (denials.ts), a Weft series Istio lacks, and
 * the connections each local pod holds open now (pod-connections.ts) from the same connection events.
 *
 * Listening and showing go together: while subscribed the Istio families are on /metrics; after
 * unsubscribe() (ProxyConfig `spec.telemetry.metrics: false`, the agent's stop) they are forgotten
 * and leave /metrics, and a new subscribe() counts from zero (frozen counters would read as "no
 * traffic").
 *
 * Cardinality is bounded: label sets naming a workload that has left the state are removed when a
 * new state arrives (`setStore`).
 */
import type { WorkloadStore } from '../state/store';
import { workloadName } from '../state/workload-name';
import { subscribeTelemetry, type ConnectionClosedEvent, type ConnectionEnds, type ConnectionOpenedEvent, type RequestCompletedEvent } from './events';
import { DenialMetrics } from './denials';
import { PodConnections } from './pod-connections';
import { ExpositionRegistry } from './exposition-registry';
import { HTTP_LABELS, httpLabels, labelKey, TCP_LABELS, tcpLabels, tcpLabelsKey, UNKNOWN, type HttpLabels, type TcpLabels } from './labels';
import type { ExpositionWriter } from './exposition-writer';
import { FAMILIES, HttpSeries, SeriesTable, TcpSeries, writeCounterFamily, writeHistogramFamily, type Pause } from './series';

export { ISTIO_BUCKETS } from './series';

/** Which workloads a label set names (what pruning reads). */
type Named = Pick<TcpLabels, 'source_workload' | 'source_workload_namespace' | 'destination_workload' | 'destination_workload_namespace'>;

/** Entries of the TCP records cache by label inputs before it starts over. */
const TCP_BY_INPUTS_MAX = 4096;

export class MeshMetrics {
  readonly registry: ExpositionRegistry;
  private readonly http = new SeriesTable<HttpSeries<HttpLabels>>((l) => new HttpSeries(l));
  private readonly tcpSeries = new SeriesTable<TcpSeries<TcpLabels>>((l) => new TcpSeries(l));
  private readonly denials = new DenialMetrics();
  /** connections open now per local pod (exported by health.ts as `weft_pod_open_connections`, a prom-client gauge) */
  readonly podConnections = new PodConnections();
  private store: WorkloadStore | undefined;
  /**
   * HTTP records already derived for a connection's ends (the same object for every request on it), by
   * reporter and outcome: a request on a kept-alive connection derives nothing. Dropped with the
   * state they were derived against and when the records are forgotten.
   */
  private derived = new WeakMap<ConnectionEnds, Map<string, HttpSeries<HttpLabels>>>();
  /**
   * The TCP record per ends, with the outcome it is for: a connection's open and close nearly always
   * share it. No outcome key and no Map per connection (they were ~0.2 KiB each open connection held).
   */
  private lastTcp = new WeakMap<ConnectionEnds, { reporter: ConnectionOpenedEvent['reporter']; security: ConnectionOpenedEvent['security']; flags: ConnectionClosedEvent['flags']; series: TcpSeries<TcpLabels> }>();
  /**
   * TCP records by what their labels derive from (tcpLabelsKey), across connections: a new
   * connection between pods already seen finds its record without deriving 27 labels and their key
   * (tcpLabels and labelKey took 1-2 % of each agent's CPU under a new connection per request,
   * docs/new-connections.md). Dropped with the state; emptied past TCP_BY_INPUTS_MAX entries
   * (plaintext clients without a pod add one per address).
   */
  private tcpByInputs = new Map<string, TcpSeries<TcpLabels>>();
  /** The last request outcome per ends and its record (dropped with `derived`). */
  private lastHttp = new WeakMap<ConnectionEnds, Pick<RequestCompletedEvent, 'reporter' | 'security' | 'protocol' | 'status' | 'grpcStatus' | 'flags'> & { series: HttpSeries<HttpLabels> }>();
  /** set while subscribed: what unsubscribes */
  private unsubscribeAll: (() => void) | undefined;


  constructor(registry: ExpositionRegistry = new ExpositionRegistry()) {
    this.registry = registry;
    registry.addSource({ render: (w, pause) => this.render(w, pause) });
  }

  /** Starts listening to the proxy's events; the Istio families are on /metrics from now on. */
  subscribe(): this {
    this.unsubscribeAll ??= subscribeTelemetry(this);
    return this;
  }

  /**
   * Stops listening (the proxy then builds no events at all, unless something else listens) and
   * forgets every Istio and denial series: they leave /metrics until subscribe() counts again from zero.
   */
  unsubscribe(): void {
    if (this.unsubscribeAll === undefined) return;
    this.unsubscribeAll();
    this.unsubscribeAll = undefined;
    this.http.clear();
    this.tcpSeries.clear();
    this.denials.clear();
    this.podConnections.clear();
    this.derived = new WeakMap();
    this.lastTcp = new WeakMap();
    this.lastHttp = new WeakMap();
    this.tcpByInputs.clear();
  }

  /**
   * The state labels are derived against. Label sets naming a workload no longer in it are removed
   * (bounded cardinality); returns how many series were removed.
   */
  setStore(store: WorkloadStore): number {
    this.store = store;
    this.derived = new WeakMap();
    this.lastTcp = new WeakMap();
    this.lastHttp = new WeakMap();
    this.tcpByInputs.clear();
    const present = new Set(store.snapshot.pods.map((p) => `${p.namespace}/${workloadName(p)}`));
    const gone = (l: Named) =>
      (l.source_workload !== UNKNOWN && !present.has(`${l.source_workload_namespace}/${l.source_workload}`)) ||
      (l.destination_workload !== UNKNOWN && !present.has(`${l.destination_workload_namespace}/${l.destination_workload}`));
    this.podConnections.prune(new Set(store.snapshot.pods.map((p) => `${p.namespace}/${p.name}`)));
    return this.tcpSeries.prune(gone) + this.http.prune(gone) + this.denials.prune(gone);
  }

  /** How many distinct label sets are kept (TCP, HTTP and denials). */
  get series(): number {
    return this.tcpSeries.size + this.http.size + this.denials.size;
  }

  /** Prometheus text exposition of everything in the registry, these series included. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  opened(ev: ConnectionOpenedEvent): void {
    this.tcp(ev, '-').open();
    this.podConnections.opened(ev);
  }

  closed(ev: ConnectionClosedEvent): void {
    // The close carries the outcome; its labels (response_flags) may differ from the open's, as in ztunnel.
    const s = this.tcp(ev, ev.flags);
    s.close(ev.bytesFromClient, ev.bytesToClient);
    this.podConnections.closed(ev);
    if (ev.flags === 'DENY') this.denials.count(s.labels, ev.policy);
  }

  request(ev: RequestCompletedEvent): void {
    const s = this.httpRecord(ev);
    s.count(ev.durationMs, ev.requestBytes, ev.responseBytes);
    if (ev.flags === 'DENY') this.denials.count(s.labels, ev.policy);
  }

  /**
   * Writes the Istio families (only while subscribed), then the denials. With `pause`, between
   * slices of series: what is counted meanwhile shows in the families not yet written (each
   * series' buckets, sum and count are written together, so a histogram stays consistent).
   */
  private async render(w: ExpositionWriter, pause?: Pause): Promise<void> {
    if (this.unsubscribeAll === undefined) return;
    await writeCounterFamily(w, FAMILIES.requests, this.http, (s) => s.requests, pause);
    await writeHistogramFamily(w, FAMILIES.duration, this.http, 0, pause);
    await writeHistogramFamily(w, FAMILIES.requestBytes, this.http, 1, pause);
    await writeHistogramFamily(w, FAMILIES.responseBytes, this.http, 2, pause);
    await writeCounterFamily(w, FAMILIES.tcpSent, this.tcpSeries, (s) => s.sent, pause);
    await writeCounterFamily(w, FAMILIES.tcpReceived, this.tcpSeries, (s) => s.received, pause);
    await writeCounterFamily(w, FAMILIES.tcpOpened, this.tcpSeries, (s) => s.opened, pause);
    await writeCounterFamily(w, FAMILIES.tcpClosed, this.tcpSeries, (s) => s.closed, pause);
    await this.denials.render(w, pause);
  }

  /**
   * The HTTP record of a request event. The last outcome seen for its ends is compared field by
   * field first: requests on a kept-alive connection mostly repeat it, and then no outcome key is built.
   */
  private httpRecord(ev: RequestCompletedEvent): HttpSeries<HttpLabels> {
    const last = this.lastHttp.get(ev.ends);
    if (last !== undefined && last.reporter === ev.reporter && last.security === ev.security && last.protocol === ev.protocol && last.status === ev.status
      && last.grpcStatus === ev.grpcStatus && last.flags === ev.flags) return last.series;
    const byOutcome = this.outcomes(ev.ends);
    const outcome = `${ev.reporter}|${ev.security}|${ev.protocol}|${ev.status}|${ev.grpcStatus ?? ''}|${ev.flags}`;
    let s = byOutcome.get(outcome);
    if (!s) {
      const labels = httpLabels(ev, this.store);
      byOutcome.set(outcome, (s = this.http.get(labelKey(HTTP_LABELS, labels), labels)));
    }
    this.lastHttp.set(ev.ends, { reporter: ev.reporter, security: ev.security, protocol: ev.protocol, status: ev.status, grpcStatus: ev.grpcStatus, flags: ev.flags, series: s });
    return s;
  }

  private outcomes(ends: ConnectionEnds): Map<string, HttpSeries<HttpLabels>> {
    let byOutcome = this.derived.get(ends);
    if (!byOutcome) this.derived.set(ends, (byOutcome = new Map()));
    return byOutcome;
  }

  /** The TCP record of a connection event with `flags` (every counter of the set exists from its first event, as Istio's). */
  private tcp(ev: ConnectionOpenedEvent, flags: ConnectionClosedEvent['flags']): TcpSeries<TcpLabels> {
    const last = this.lastTcp.get(ev.ends);
    if (last !== undefined && last.reporter === ev.reporter && last.security === ev.security && last.flags === flags) return last.series;
    const inputs = tcpLabelsKey(ev, flags);
    let series = this.tcpByInputs.get(inputs);
    if (series === undefined) {
      const labels = tcpLabels(ev, flags, this.store);
      series = this.tcpSeries.get(labelKey(TCP_LABELS, labels), labels);
      if (this.tcpByInputs.size >= TCP_BY_INPUTS_MAX) this.tcpByInputs.clear();
      this.tcpByInputs.set(inputs, series);
    }
    this.lastTcp.set(ev.ends, { reporter: ev.reporter, security: ev.security, flags, series });
    return series;
  }
}
