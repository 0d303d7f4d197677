/**
 * `weft_overload_shed_total{pod_namespace,pod_name,reason}`: connections the proxy refused to keep its pods'
 * share fair (proxy/fairness.ts), counted from the overload-shed channel (events.ts). An account that
 * is not a pod (a peer known by identity, a plaintext client by address) has it in `pod_name` and an
 * empty `pod_namespace` unless its identity names one. Reasons:
 * `max_connections` and `max_pending` (ProxyConfig spec.fairness limits), `overload` (the noisiest
 * pod shed while the event loop lags). Part of the agent's health: counted whether or not the mesh
 * metrics are on.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type * as PromClient from 'prom-client';
import { CHANNELS, type OverloadShedEvent } from './events';

// The class from its own file, as prom-classes.ts loads prom-client's: the index loads much more.
const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;

/** Registers the counter and subscribes it; the returned function unsubscribes. */
export function registerOverloadShed(registry: PromClient.Registry): () => void {
  const shed = new Counter({
    name: 'weft_overload_shed_total',
    help: 'Connections refused to keep the node proxy fair between pods (ProxyConfig spec.fairness): max_connections, max_pending, or overload (the noisiest pod shed while the event loop lags)',
    labelNames: ['pod_namespace', 'pod_name', 'reason'],
    registers: [registry],
  });
  const onShed = (m: unknown): void => {
    const e = m as OverloadShedEvent;
    shed.inc({ pod_namespace: e.namespace, pod_name: e.pod, reason: e.reason });
  };
  diagnostics_channel.subscribe(CHANNELS.overloadShed, onShed);
  return () => { diagnostics_channel.unsubscribe(CHANNELS.overloadShed, onShed); };
}
