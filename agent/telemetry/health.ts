/**
 * The agent's own health, in the same registry as the mesh metrics: event-loop delay, heap and RSS,
 * live connections (in all and per local pod), certificate expiry per identity, Istio-style build info, and the process's
 * open fds and TCP sockets (process-resources.ts). Values are read when Prometheus scrapes
 * (collect), so nothing runs between scrapes but the event-loop histogram's sampling.
 */
import { monitorEventLoopDelay, type RecordableHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from './prom-classes';
import { registerProcessResources } from './process-resources';

export interface HealthSources {
  /** Connections the proxy holds now (all listeners). */
  connections(): number;
  /** Certificates held, by SPIFFE identity. */
  certificates(): { identity: string; notAfter?: Date }[];
  /** The Weft version, for `istio_build{component="weft",tag}`. */
  version: string;
  /** Connections open now per local pod (MeshMetrics' PodConnections); absent: the gauge has no series. */
  podConnections?(): Iterable<{ namespace: string; name: string; inbound: number; outbound: number }>;
  /**
   * The event loop's delay in ns as the proxy already samples it (FairShare's lag samples, every
   * 10 ms while traffic moves, none while it is quiet). Absent: a monitor of the health gauge's own
   * (a 10 ms timer that wakes the process 100 times a second, also when idle).
   */
  loopDelay?: RecordableHistogram;
}

/** Registers the health gauges; the returned function stops the event-loop monitor (its own, when no loopDelay is given). */
export function registerHealth(registry: Registry, s: HealthSources, now: () => number = Date.now): () => void {
  const r = [registry];
  const own = s.loopDelay === undefined ? monitorEventLoopDelay({ resolution: 10 }) : undefined;
  own?.enable();
  const loop = s.loopDelay ?? own!;
  new Gauge({ name: 'weft_agent_event_loop_delay_seconds', help: 'Event-loop delay since the last scrape (p50, p99, max; 0 when the loop was idle throughout)', labelNames: ['quantile'], registers: r,
    collect() {
      this.set({ quantile: '0.5' }, loop.percentile(50) / 1e9);
      this.set({ quantile: '0.99' }, loop.percentile(99) / 1e9);
      this.set({ quantile: '1' }, loop.max / 1e9);
      loop.reset();
    } });
  new Gauge({ name: 'weft_agent_memory_bytes', help: 'Memory of the agent process (rss, heap_used, heap_total)', labelNames: ['kind'], registers: r,
    collect() {
      const m = process.memoryUsage();
      this.set({ kind: 'rss' }, m.rss);
      this.set({ kind: 'heap_used' }, m.heapUsed);
      this.set({ kind: 'heap_total' }, m.heapTotal);
    } });
  new Gauge({ name: 'weft_agent_connections', help: 'Connections open now: held by the outbound listener (15001) plus TCP connections delivered into local pods', registers: r,
    collect() { this.set(s.connections()); } });
  new Gauge({ name: 'weft_certificate_expiry_seconds', help: 'Seconds until the workload certificate expires, per identity', labelNames: ['identity'], registers: r,
    collect() {
      this.reset();
      for (const c of s.certificates()) if (c.notAfter) this.set({ identity: c.identity }, Math.round((c.notAfter.getTime() - now()) / 1000));
    } });
  new Gauge({ name: 'weft_pod_open_connections', help: 'Connections open now per pod on this node: outbound (the pod opened them, its node proxy holds them), inbound (the node proxy delivers them into the pod)',
    labelNames: ['pod_namespace', 'pod_name', 'direction'], registers: r,
    collect() {
      this.reset();
      for (const c of s.podConnections?.() ?? []) {
        this.set({ pod_namespace: c.namespace, pod_name: c.name, direction: 'inbound' }, c.inbound);
        this.set({ pod_namespace: c.namespace, pod_name: c.name, direction: 'outbound' }, c.outbound);
      }
    } });
  registerProcessResources(registry);
  new Gauge({ name: 'istio_build', help: 'Build information', labelNames: ['component', 'tag'], registers: r }).set({ component: 'weft', tag: s.version }, 1);
  return () => own?.disable();
}
