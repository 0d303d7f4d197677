/**
 * What the source proxy did for each Service port it sends to, beyond Istio's request metrics:
 * retries made, outlier ejections (so far, and endpoints ejected now) and circuit-breaker overflows
 * by the limit that overflowed. Read from the ServiceRuntime when Prometheus scrapes (collect), so
 * the request path pays nothing for them.
 *
 * Cardinality: one series per Service port the proxy has sent to (and per breaker limit), for
 * Services still in the state; the runtime drops the ports of Services that are gone.
 */
import { Counter, Gauge, type Registry } from './prom-classes';
import type { ServicePortStats } from '../proxy/service-runtime';
import { serviceHost } from './labels';

export const SERVICE_PORT_LABELS = ['destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_port'] as const;
type PortLabels = Record<(typeof SERVICE_PORT_LABELS)[number], string>;

/** The labels naming one Service port: Istio's destination_service (FQDN), its name and namespace, and the port. Pure. */
export function servicePortLabels(s: Pick<ServicePortStats, 'service' | 'port'>): PortLabels {
  return {
    destination_service: serviceHost(s.service),
    destination_service_name: s.service.name,
    destination_service_namespace: s.service.namespace,
    destination_port: String(s.port),
  };
}

/** Registers the Service-port metrics; `stats` is asked at each scrape. */
export function registerServiceMetrics(registry: Registry, stats: () => readonly ServicePortStats[]): void {
  const r = [registry];
  const labelNames = [...SERVICE_PORT_LABELS];
  // A counter read from elsewhere: reset, then set to the runtime's total (a Service port that left starts again at 0, which rate() reads as a reset).
  const total = (c: Counter<string>, value: (s: ServicePortStats) => number) => {
    c.reset();
    for (const s of stats()) c.inc(servicePortLabels(s), value(s));
  };
  new Counter({ name: 'weft_upstream_retries_total', help: 'Retries the source proxy made to a Service port (HTTPRoute retry or TrafficPolicy retries), each try after the first', labelNames, registers: r,
    collect() { total(this, (s) => s.retries); } });
  new Counter({ name: 'weft_outlier_ejections_total', help: 'Endpoints of a Service port ejected by outlier detection', labelNames, registers: r,
    collect() { total(this, (s) => s.ejections); } });
  new Gauge({ name: 'weft_outlier_ejected_endpoints', help: 'Endpoints of a Service port ejected now', labelNames, registers: r,
    collect() {
      this.reset();
      for (const s of stats()) this.set(servicePortLabels(s), s.ejectedNow);
    } });
  new Counter({ name: 'weft_circuit_breaker_overflows_total', help: 'Connections or requests to a Service port refused by its circuit breaker, by the limit that overflowed (connection, pending, request, retry)',
    labelNames: [...labelNames, 'kind'], registers: r,
    collect() {
      this.reset();
      for (const s of stats()) {
        const l = servicePortLabels(s);
        for (const [kind, n] of Object.entries(s.overflows)) this.inc({ ...l, kind }, n);
      }
    } });
}
