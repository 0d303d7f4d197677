import type { ResolvedTrafficPolicy, RetryOn, TrafficPolicyInfo, TrafficSettings } from './traffic-policy';

/**
 * Which TrafficPolicy applies to a Service port, and every value filled in. Defaults are Istio's
 * (what a DestinationRule without the field gets), so a policy moved over from Istio behaves the
 * same; where Istio defers to Envoy, Envoy's. docs/traffic-policy.md lists them with reasons.
 */

/** Istio leaves the circuit breakers open: Envoy's 1024 turned into surprising 503s, so Istio sets 2^32-1. */
export const UNLIMITED = 2 ** 32 - 1;

/** Istio's default retry policy for a route that sets none (pilot/pkg/networking/core/route/retry). */
export const DEFAULT_RETRY_ON: Readonly<RetryOn> = Object.freeze({
  conditions: Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes']) as RetryOn['conditions'],
  codes: Object.freeze([503]) as number[],
});

export const DEFAULTS = {
  loadBalancer: 'LEAST_REQUEST',
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 3_600_000,
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  consecutiveLocalOriginFailures: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  /** Envoy's `max_ejection_time`. */
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
  attempts: 2,
  /** Envoy's retry backoff base; the cap is 10× the base. */
  backoffMs: 25,
  /** Envoy's `retry_budget` defaults. Istio sets no budget; Weft always keeps one so retries cannot storm. */
  budgetPercent: 20,
  minRetryConcurrency: 3,
} as const;

/** Oldest first (`metadata.creationTimestamp`; one without comes after those with), then by `namespace/name`: GEP-713's rule. */
export function precedence(a: TrafficPolicyInfo, b: TrafficPolicyInfo): number {
  const at = a.createdAt ?? Infinity;
  const bt = b.createdAt ?? Infinity;
  if (at !== bt) return at < bt ? -1 : 1;
  const ak = `${a.namespace}/${a.name}`;
  const bk = `${b.namespace}/${b.name}`;
  return ak < bk ? -1 : ak > bk ? 1 : 0;
}

/** The policies targeting one Service, the one in force first. */
export function policiesFor(policies: readonly TrafficPolicyInfo[], service: { namespace: string; name: string }): TrafficPolicyInfo[] {
  return policies.filter((p) => p.namespace === service.namespace && p.targets.includes(service.name)).sort(precedence);
}

/** What the proxy carries out for `service` on Service port `port`. */
export function trafficPolicyFor(
  policies: readonly TrafficPolicyInfo[], service: { namespace: string; name: string }, port: number,
): ResolvedTrafficPolicy {
  const [winner, ...losers] = policiesFor(policies, service);
  const resolved = resolveSettings(winner === undefined ? {} : settingsAt(winner, port));
  if (winner !== undefined) resolved.source = `${winner.namespace}/${winner.name}`;
  resolved.ignored = losers.map((p) => `${p.namespace}/${p.name}`);
  return resolved;
}

export interface TrafficPolicyConflict {
  /** `namespace/name` of the policy that is not applied to `service`. */
  policy: string;
  /** `namespace/name` of the Service both target. */
  service: string;
  /** `namespace/name` of the policy in force there. */
  winner: string;
  message: string;
}

/** Every policy that loses a Service to an older one: for `weft status`, the log and (in Kubernetes) its status. */
export function trafficPolicyConflicts(policies: readonly TrafficPolicyInfo[]): TrafficPolicyConflict[] {
  const byService = new Map<string, TrafficPolicyInfo[]>();
  for (const p of policies) {
    for (const target of p.targets) {
      const key = `${p.namespace}/${target}`;
      const list = byService.get(key);
      if (list === undefined) byService.set(key, [p]);
      else list.push(p);
    }
  }
  const out: TrafficPolicyConflict[] = [];
  for (const [service, list] of byService) {
    if (list.length < 2) continue;
    const [winner, ...losers] = list.sort(precedence);
    const w = `${winner!.namespace}/${winner!.name}`;
    for (const p of losers) {
      const policy = `${p.namespace}/${p.name}`;
      out.push({
        policy, service, winner: w,
        message: `TrafficPolicy ${policy} is not applied to Service ${service}: TrafficPolicy ${w} targets it too and is older (or, equally old, first by name); merge the two or remove one`,
      });
    }
  }
  return out.sort((a, b) => (a.policy + a.service < b.policy + b.service ? -1 : 1));
}

/** The policy's blocks with those of its `portLevelSettings` entry for `port` in their place (Istio's MergeTrafficPolicy: block by block). */
export function settingsAt(policy: TrafficPolicyInfo, port: number): TrafficSettings {
  const level = policy.portLevel.find((entry) => entry.port === port);
  return level === undefined ? policy.settings : { ...policy.settings, ...level.settings };
}

/** Every field filled in from `s`, else the default. */
export function resolveSettings(s: TrafficSettings): ResolvedTrafficPolicy {
  const tcp = s.connectionPool?.tcp ?? {};
  const http = s.connectionPool?.http ?? {};
  const od = s.outlierDetection;
  const r = s.retries ?? {};
  const base = od?.baseEjectionTimeMs ?? DEFAULTS.baseEjectionTimeMs;
  return {
    ignored: [],
    loadBalancer: s.loadBalancer ?? DEFAULTS.loadBalancer,
    connectionPool: {
      maxConnections: tcp.maxConnections ?? UNLIMITED,
      connectTimeoutMs: tcp.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      maxPendingRequests: http.http1MaxPendingRequests ?? UNLIMITED,
      maxRequests: http.http2MaxRequests ?? UNLIMITED,
      maxRequestsPerConnection: http.maxRequestsPerConnection ?? 0,
      maxRetries: http.maxRetries ?? UNLIMITED,
      idleTimeoutMs: http.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
    },
    outlierDetection: {
      enabled: od !== undefined,
      consecutive5xxErrors: od?.consecutive5xxErrors ?? DEFAULTS.consecutive5xxErrors,
      consecutiveGatewayErrors: od?.consecutiveGatewayErrors ?? DEFAULTS.consecutiveGatewayErrors,
      splitExternalLocalOriginErrors: od?.splitExternalLocalOriginErrors ?? false,
      consecutiveLocalOriginFailures: od?.consecutiveLocalOriginFailures ?? DEFAULTS.consecutiveLocalOriginFailures,
      intervalMs: od?.intervalMs ?? DEFAULTS.intervalMs,
      baseEjectionTimeMs: base,
      // Envoy: the cap is max(base_ejection_time, max_ejection_time).
      maxEjectionTimeMs: Math.max(base, od?.maxEjectionTimeMs ?? DEFAULTS.maxEjectionTimeMs),
      maxEjectionPercent: od?.maxEjectionPercent ?? DEFAULTS.maxEjectionPercent,
      minHealthPercent: od?.minHealthPercent ?? DEFAULTS.minHealthPercent,
    },
    fault: s.fault ?? {},
    timeoutMs: s.timeoutMs ?? 0,
    retries: {
      attempts: r.attempts ?? DEFAULTS.attempts,
      perTryTimeoutMs: r.perTryTimeoutMs ?? 0,
      retryOn: r.retryOn ?? { conditions: [...DEFAULT_RETRY_ON.conditions], codes: [...DEFAULT_RETRY_ON.codes] },
      backoffMs: r.backoffMs ?? DEFAULTS.backoffMs,
      budget: {
        percent: r.retryBudget?.percent ?? DEFAULTS.budgetPercent,
        minRetryConcurrency: r.retryBudget?.minRetryConcurrency ?? DEFAULTS.minRetryConcurrency,
      },
    },
  };
}
