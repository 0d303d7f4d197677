/**
 * TrafficPolicy (`networking.weft.dev/v1`) as Weft holds it past the edge: validated, durations in
 * milliseconds, every field still optional (absent = inherit, then the default; see resolve.ts).
 * The shapes are those of Istio's DestinationRule `trafficPolicy` (plus VirtualService's `fault`,
 * `timeout` and `retries`), so a reader who knows Istio reads these the same way.
 */

export type LoadBalancerKind = 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM';

/** Envoy's `x-envoy-retry-on` conditions that Weft carries out (retry.ts says what each retries). */
export const RETRY_CONDITIONS = [
  '5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-4xx', 'retriable-status-codes',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

export interface RetryOn {
  conditions: RetryCondition[];
  /** For `retriable-status-codes`: Istio writes them in `retryOn` (`"503,retriable-status-codes"`), the Gateway API in `retry.codes`. */
  codes: number[];
}

export interface RetryBudgetSettings {
  /** Retries may be in flight while they are at most this share of the active requests (Envoy `budget_percent`). */
  percent?: number;
  /** ... or at most this many, whichever is larger (Envoy `min_retry_concurrency`). */
  minRetryConcurrency?: number;
}

export interface ConnectionPoolSettings {
  tcp?: { maxConnections?: number; connectTimeoutMs?: number };
  http?: {
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    maxRequestsPerConnection?: number;
    maxRetries?: number;
    idleTimeoutMs?: number;
  };
}

export interface OutlierDetectionSettings {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  splitExternalLocalOriginErrors?: boolean;
  consecutiveLocalOriginFailures?: number;
  intervalMs?: number;
  baseEjectionTimeMs?: number;
  maxEjectionTimeMs?: number;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

export interface FaultSettings {
  delay?: { percentage: number; fixedDelayMs: number };
  /** Exactly one of httpStatus and grpcStatus. */
  abort?: { percentage: number; httpStatus?: number; grpcStatus?: GrpcStatusName };
}

export interface RetrySettings {
  attempts?: number;
  perTryTimeoutMs?: number;
  retryOn?: RetryOn;
  backoffMs?: number;
  retryBudget?: RetryBudgetSettings;
}

/** The blocks a policy (or one of its port-level entries) sets. A block set at port level replaces the policy-level block whole. */
export interface TrafficSettings {
  loadBalancer?: LoadBalancerKind;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetectionSettings;
  fault?: FaultSettings;
  timeoutMs?: number;
  retries?: RetrySettings;
}

export interface TrafficPolicyInfo {
  namespace: string;
  name: string;
  /** Names of the Services (in the policy's namespace) the policy attaches to. */
  targets: string[];
  /** `metadata.creationTimestamp` in ms since the epoch, when the object carries one: the oldest policy wins a conflict. */
  createdAt?: number;
  settings: TrafficSettings;
  /** Per Service port (`port.number`), as Istio's `portLevelSettings`. */
  portLevel: { port: number; settings: TrafficSettings }[];
}

/** gRPC status codes by the names Istio's `abort.grpcStatus` takes, with their numbers. */
export const GRPC_STATUS = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusName = keyof typeof GRPC_STATUS;

/** Every field filled in: what the proxy carries out for one Service port. Times in milliseconds; 0 means none. */
export interface ResolvedTrafficPolicy {
  /** `namespace/name` of the TrafficPolicy in force; absent when only defaults apply. */
  source?: string;
  /** Other TrafficPolicies that target the same Service and lost the conflict (not applied), `namespace/name`. */
  ignored: string[];
  loadBalancer: LoadBalancerKind;
  connectionPool: {
    maxConnections: number;
    connectTimeoutMs: number;
    /** Requests waiting for a connection (Envoy `max_pending_requests`). */
    maxPendingRequests: number;
    /** Requests in flight to the Service port (Envoy `max_requests`). */
    maxRequests: number;
    /** 0: unlimited. 1: no keep-alive. */
    maxRequestsPerConnection: number;
    /** Retries in flight, when no retry budget applies (Envoy `max_retries`). */
    maxRetries: number;
    idleTimeoutMs: number;
  };
  outlierDetection: {
    /** False when no TrafficPolicy sets `outlierDetection` (as in Istio: no DestinationRule, no ejection). */
    enabled: boolean;
    consecutive5xxErrors: number;
    consecutiveGatewayErrors: number;
    splitExternalLocalOriginErrors: boolean;
    consecutiveLocalOriginFailures: number;
    intervalMs: number;
    baseEjectionTimeMs: number;
    maxEjectionTimeMs: number;
    maxEjectionPercent: number;
    minHealthPercent: number;
  };
  fault: FaultSettings;
  /** Whole-request timeout, retries included; 0: none. */
  timeoutMs: number;
  retries: {
    /** Retries after the first try (Istio's `attempts`, Gateway API's `retry.attempts`). */
    attempts: number;
    perTryTimeoutMs: number;
    retryOn: RetryOn;
    /** Base of the jittered exponential backoff; the cap is 10× (Envoy). */
    backoffMs: number;
    budget: { percent: number; minRetryConcurrency: number };
  };
}
