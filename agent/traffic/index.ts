/**
 * Traffic management decisions for the node proxy, pure (no sockets; time and randomness passed
 * in): TrafficPolicy validated at the edge and resolved per Service port, load balancers, outlier
 * detection, circuit breaking, retries with a budget, fault injection. docs/traffic-policy.md.
 */
export type {
  ConnectionPoolSettings, FaultSettings, GrpcStatusName, LoadBalancerKind, OutlierDetectionSettings, ResolvedTrafficPolicy,
  RetryCondition, RetryOn, RetrySettings, TrafficPolicyInfo, TrafficSettings,
} from './traffic-policy';
export { GRPC_STATUS, RETRY_CONDITIONS } from './traffic-policy';
export { convertTrafficPolicy, retryOn } from './convert';
export { parseDurationMs, formatMs } from './duration';
export {
  DEFAULTS, DEFAULT_RETRY_ON, UNLIMITED, policiesFor, resolveSettings, settingsAt, trafficPolicyConflicts, trafficPolicyFor,
  type TrafficPolicyConflict,
} from './resolve';
export { seededRandom, type Random } from './prng';
export { pickWeighted } from './weighted';
export {
  createBalancer, inService, LeastRequestBalancer, RandomBalancer, RoundRobinBalancer, type Balancer, type BalancerOptions,
} from './balancer';
export { OutlierDetector, resultOf, type EjectionReason, type EndpointResult, type OutlierEvent, type OutlierSettings } from './outlier';
export { breakerLimits, CircuitBreaker, type BreakerLimits, type Lease, type LimitKind, type Overflow } from './circuit-breaker';
export { backoffMs, retriable, RetryBudget, shouldRetry, type TryOutcome } from './retry';
export { faultFor, type InjectedFault } from './fault';
