/**
 * ProxyConfig `spec.telemetry.metrics`, applied from each snapshot without a restart.
 *
 * Off: the mesh metrics and the live view stop listening to the proxy's events (publishers build an
 * event only while someone listens, so the proxy then builds none); MeshMetrics forgets its Istio
 * series when it unsubscribes, so /metrics serves the agent's health only, and
 * `weft_telemetry_metrics_enabled 0` says why the request and TCP series are missing. Frozen
 * counters would read as "no traffic".
 * On again: they listen and count from zero, as after an agent restart (Prometheus' rate() takes it
 * for a counter reset).
 */
import { Gauge, type Registry } from './prom-classes';

/** What listens to the proxy's events (MeshMetrics, LiveView). */
export interface Listener { subscribe(): unknown; unsubscribe(): void }

export class MetricsSwitch {
  private on = true;
  private readonly gauge: Gauge;

  constructor(registry: Registry, private readonly listeners: Listener[]) {
    this.gauge = new Gauge({ name: 'weft_telemetry_metrics_enabled',
      help: '1 while the Istio request and TCP metrics are collected; 0: switched off by ProxyConfig spec.telemetry.metrics, /metrics then holds the agent\'s health only',
      registers: [registry] });
    this.gauge.set(1);
  }

  get enabled(): boolean { return this.on; }

  /** Subscribes everything (the agent's start). */
  start(): void {
    if (this.on) for (const l of this.listeners) l.subscribe();
  }

  /** Applies the switch; true when it changed something. */
  set(on: boolean): boolean {
    if (on === this.on) return false;
    this.on = on;
    this.gauge.set(on ? 1 : 0);
    for (const l of this.listeners) { if (on) l.subscribe(); else l.unsubscribe(); }
    return true;
  }

  /** Unsubscribes everything (the agent's stop). */
  stop(): void {
    for (const l of this.listeners) l.unsubscribe();
  }
}
