/**
 * Authorization denials by the policy that decided them: `weft_authorization_denials_total`.
 * Istio has no such series (its denials show only as `response_code="403"` or
 * `response_flags="DENY"`, without the policy); an operator asking "which policy is refusing
 * traffic, and to whom" reads it here. Counted from the same events as Istio's metrics (a denied
 * request, a denied TCP connection, a connection closed when a policy change denied it), with the
 * labels those events already derived.
 *
 * Cardinality: source workload × destination workload × deciding policy × protocol, for workloads
 * still in the state (pruned with Istio's series) and policies in the config.
 */
import type { HttpLabels, TcpLabels } from './labels';
import { labelKey } from './labels';
import type { Family } from './exposition';
import type { ExpositionWriter } from './exposition-writer';
import { CounterSeries, SeriesTable, writeCounterFamily, type Pause } from './series';

export const DENIAL_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'destination_workload', 'destination_workload_namespace', 'policy', 'request_protocol',
] as const;
export type DenialLabels = Record<(typeof DENIAL_LABELS)[number], string>;

/**
 * The `policy` label when no policy denied by name: ALLOW policies were in force and none matched
 * (Istio's implicit deny). A policy is always `namespace/name`, so this cannot be taken for one.
 */
export const DEFAULT_DENY = 'default-deny';

/** The denial's labels from the connection's or request's Istio labels and the deciding policy. Pure. */
export function denialLabels(l: TcpLabels | HttpLabels, policy: string | undefined): DenialLabels {
  return {
    reporter: l.reporter,
    source_workload: l.source_workload,
    source_workload_namespace: l.source_workload_namespace,
    destination_workload: l.destination_workload,
    destination_workload_namespace: l.destination_workload_namespace,
    policy: policy ?? DEFAULT_DENY,
    request_protocol: l.request_protocol,
  };
}

export const DENIALS_FAMILY: Family = { name: 'weft_authorization_denials_total',
  help: 'Requests and TCP connections denied by authorization policy, by the deciding policy (default-deny: ALLOW policies in force, none matched)', type: 'counter' };

/** The denial counter, kept with Istio's series (series.ts) and written out with them. */
export class DenialMetrics {
  private readonly series = new SeriesTable<CounterSeries<DenialLabels>>((l) => new CounterSeries(l));

  /** One denial (a request, or a TCP connection) with the Istio labels already derived for it. */
  count(l: TcpLabels | HttpLabels, policy: string | undefined): void {
    const d = denialLabels(l, policy);
    this.series.get(labelKey(DENIAL_LABELS, d), d).inc();
  }

  /** Removes the series `gone` says name a departed workload; returns how many. */
  prune(gone: (l: Pick<TcpLabels, 'source_workload' | 'source_workload_namespace' | 'destination_workload' | 'destination_workload_namespace'>) => boolean): number {
    return this.series.prune(gone);
  }

  /** Forgets every series (metrics switched off). */
  clear(): void {
    this.series.clear();
  }

  /** Writes the family (header and samples). */
  render(w: ExpositionWriter, pause?: Pause): Promise<void> {
    return writeCounterFamily(w, DENIALS_FAMILY, this.series, (s) => s.value, pause);
  }

  get size(): number {
    return this.series.size;
  }
}
