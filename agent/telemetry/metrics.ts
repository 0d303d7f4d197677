/**
 * Istio's standard metrics, kept in a prom-client Registry of Weft's own (not the global one) from
 * the events the proxy publishes (events.ts). Names, types, buckets and labels as
 * istio-metrics.md describes them; byte direction as Istio's (received = client → server).
 *
 * Denials are also counted by their deciding policy (denials.ts), a Weft series Istio lacks.
 *
 * Cardinality is bounded: label sets naming a workload that has left the state are removed when a
 * new state arrives (`setStore`).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { Counter, Histogram, Registry } from 'prom-client';
import type { WorkloadStore } from '../state/store';
import { workloadName } from '../state/workload-name';
import { CHANNELS, type ConnectionClosedEvent, type ConnectionEnds, type ConnectionOpenedEvent, type RequestCompletedEvent } from './events';
import { DenialMetrics } from './denials';
import { HTTP_LABELS, httpLabels, labelKey, TCP_LABELS, tcpLabels, UNKNOWN, type HttpLabels, type TcpLabels } from './labels';

/** Envoy's default histogram bounds (Istio sets none of its own): ms for durations, bytes for sizes. */
export const ISTIO_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000] as const;

export class MeshMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<string>;
  private readonly duration: Histogram<string>;
  private readonly requestBytes: Histogram<string>;
  private readonly responseBytes: Histogram<string>;
  private readonly tcpSent: Counter<string>;
  private readonly tcpReceived: Counter<string>;
  private readonly tcpOpened: Counter<string>;
  private readonly tcpClosed: Counter<string>;
  private readonly denials: DenialMetrics;
  /** every label set written, by key, so that those of departed workloads can be removed */
  private readonly tcpSeries = new Map<string, TcpLabels>();
  private readonly httpSeries = new Map<string, HttpLabels>();
  private store: WorkloadStore | undefined;
  /**
   * Label sets already derived for a connection's ends (the same object for every request on it),
   * by reporter and outcome: a request on a kept-alive connection derives nothing. Dropped with the
   * state they were derived against.
   */
  private derived = new WeakMap<ConnectionEnds, Map<string, { labels: HttpLabels; key: string }>>();
  private subscribed = false;

  private readonly onOpened = (m: unknown) => this.opened(m as ConnectionOpenedEvent);
  private readonly onClosed = (m: unknown) => this.closed(m as ConnectionClosedEvent);
  private readonly onRequest = (m: unknown) => this.request(m as RequestCompletedEvent);

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const r = [registry];
    const http = [...HTTP_LABELS];
    const tcp = [...TCP_LABELS];
    const buckets = [...ISTIO_BUCKETS];
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests, counted at their end', labelNames: http, registers: r });
    this.duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds', labelNames: http, buckets, registers: r });
    this.requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request body size in bytes', labelNames: http, buckets, registers: r });
    this.responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'Response body size in bytes', labelNames: http, buckets, registers: r });
    this.tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent back to the client (server to client)', labelNames: tcp, registers: r });
    this.tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client (client to server)', labelNames: tcp, registers: r });
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: tcp, registers: r });
    this.tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: tcp, registers: r });
    this.denials = new DenialMetrics(registry);
  }

  /** Starts listening to the proxy's events. */
  subscribe(): this {
    if (this.subscribed) return this;
    diagnostics_channel.subscribe(CHANNELS.connectionOpened, this.onOpened);
    diagnostics_channel.subscribe(CHANNELS.connectionClosed, this.onClosed);
    diagnostics_channel.subscribe(CHANNELS.requestCompleted, this.onRequest);
    this.subscribed = true;
    return this;
  }

  /** Stops listening; the proxy then builds no events at all (unless something else listens). */
  unsubscribe(): void {
    if (!this.subscribed) return;
    diagnostics_channel.unsubscribe(CHANNELS.connectionOpened, this.onOpened);
    diagnostics_channel.unsubscribe(CHANNELS.connectionClosed, this.onClosed);
    diagnostics_channel.unsubscribe(CHANNELS.requestCompleted, this.onRequest);
    this.subscribed = false;
  }

  /**
   * The state labels are derived against. Label sets naming a workload no longer in it are removed
   * (bounded cardinality); returns how many series were removed.
   */
  setStore(store: WorkloadStore): number {
    this.store = store;
    this.derived = new WeakMap();
    const present = new Set(store.snapshot.pods.map((p) => `${p.namespace}/${workloadName(p)}`));
    const gone = (l: Pick<TcpLabels, 'source_workload' | 'source_workload_namespace' | 'destination_workload' | 'destination_workload_namespace'>) =>
      (l.source_workload !== UNKNOWN && !present.has(`${l.source_workload_namespace}/${l.source_workload}`)) ||
      (l.destination_workload !== UNKNOWN && !present.has(`${l.destination_workload_namespace}/${l.destination_workload}`));
    let removed = 0;
    for (const [key, l] of this.tcpSeries) {
      if (!gone(l)) continue;
      for (const m of [this.tcpSent, this.tcpReceived, this.tcpOpened, this.tcpClosed]) m.remove(l);
      this.tcpSeries.delete(key);
      removed++;
    }
    for (const [key, l] of this.httpSeries) {
      if (!gone(l)) continue;
      this.requests.remove(l);
      for (const h of [this.duration, this.requestBytes, this.responseBytes]) h.remove(l);
      this.httpSeries.delete(key);
      removed++;
    }
    return removed + this.denials.prune(gone);
  }

  /** How many distinct label sets are kept (TCP, HTTP and denials). */
  get series(): number {
    return this.tcpSeries.size + this.httpSeries.size + this.denials.size;
  }

  /** Prometheus text exposition of everything in this registry. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  opened(ev: ConnectionOpenedEvent): void {
    this.tcpOpened.inc(this.tcp(tcpLabels(ev, '-', this.store)));
  }

  closed(ev: ConnectionClosedEvent): void {
    // The close carries the outcome; its labels (response_flags) may differ from the open's, as in ztunnel.
    const l = this.tcp(tcpLabels(ev, ev.flags, this.store));
    this.tcpClosed.inc(l);
    this.tcpReceived.inc(l, ev.bytesFromClient);
    this.tcpSent.inc(l, ev.bytesToClient);
    if (ev.flags === 'DENY') this.denials.count(l, ev.policy);
  }

  request(ev: RequestCompletedEvent): void {
    let byOutcome = this.derived.get(ev.ends);
    if (!byOutcome) this.derived.set(ev.ends, (byOutcome = new Map()));
    const outcome = `${ev.reporter}|${ev.security}|${ev.protocol}|${ev.status}|${ev.grpcStatus ?? ''}|${ev.flags}`;
    let d = byOutcome.get(outcome);
    if (!d) {
      const labels = httpLabels(ev, this.store);
      d = { labels, key: labelKey(HTTP_LABELS, labels) };
      byOutcome.set(outcome, d);
    }
    const l = d.labels;
    if (!this.httpSeries.has(d.key)) this.httpSeries.set(d.key, l);
    this.requests.inc(l);
    this.duration.observe(l, ev.durationMs);
    this.requestBytes.observe(l, ev.requestBytes);
    this.responseBytes.observe(l, ev.responseBytes);
    if (ev.flags === 'DENY') this.denials.count(l, ev.policy);
  }

  private tcp(l: TcpLabels): TcpLabels {
    const key = labelKey(TCP_LABELS, l);
    if (!this.tcpSeries.has(key)) {
      this.tcpSeries.set(key, l);
      // Every series of the set exists from its first sample (a closed counter at 0 while the connection lives).
      this.tcpClosed.inc(l, 0);
      this.tcpSent.inc(l, 0);
      this.tcpReceived.inc(l, 0);
      this.tcpOpened.inc(l, 0);
    }
    return l;
  }
}
