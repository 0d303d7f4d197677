import { isMapping, join, type Checker, type Fields } from '../config/checker';
import type { Metadata } from '../config/metadata';
import { parseDurationMs } from './duration';
import {
  GRPC_STATUS, RETRY_CONDITIONS, type ConnectionPoolSettings, type FaultSettings, type GrpcStatusName, type LoadBalancerKind,
  type OutlierDetectionSettings, type RetryCondition, type RetryOn, type RetrySettings, type TrafficPolicyInfo, type TrafficSettings,
} from './traffic-policy';

/**
 * Checks a TrafficPolicy spec field by field and converts it once, at the edge. The blocks keep
 * the shapes of Istio's DestinationRule `trafficPolicy` (loadBalancer, connectionPool,
 * outlierDetection, portLevelSettings) and VirtualService route (fault, timeout, retries). A field
 * Istio has and Weft does not carry out is refused by name, never ignored: an ignored limit or
 * ejection rule would look in force and not be.
 */

const SETTINGS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'fault', 'timeout', 'retries'];
const SPEC = new Set(['targetRefs', ...SETTINGS, 'portLevelSettings']);
const PORT_LEVEL = new Set(['port', ...SETTINGS]);
const TARGET_REF = new Set(['group', 'kind', 'name', 'sectionName']);
const LOAD_BALANCER = new Set(['simple']);
const CONNECTION_POOL = new Set(['tcp', 'http']);
const TCP = new Set(['maxConnections', 'connectTimeout']);
const HTTP = new Set(['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'idleTimeout']);
const OUTLIER = new Set([
  'consecutive5xxErrors', 'consecutiveGatewayErrors', 'splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures',
  'interval', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent', 'minHealthPercent',
]);
const FAULT = new Set(['delay', 'abort']);
const DELAY = new Set(['percentage', 'fixedDelay']);
const ABORT = new Set(['percentage', 'httpStatus', 'grpcStatus']);
const PERCENTAGE = new Set(['value']);
const RETRIES = new Set(['attempts', 'perTryTimeout', 'retryOn', 'backoff', 'retryBudget']);
const RETRY_BUDGET = new Set(['percent', 'minRetryConcurrency']);
const SIMPLE = ['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM', 'LEAST_CONN', 'UNSPECIFIED', 'PASSTHROUGH'] as const;

const NOT_CARRIED = 'Weft does not carry it out';
/** Istio fields Weft refuses, by the block they sit in, with what to do instead. */
const UNSUPPORTED: Record<string, Record<string, string>> = {
  spec: {
    tls: `${NOT_CARRIED}: traffic between meshed pods always uses the mesh's own mTLS (identities per workload; see PeerAuthentication)`,
    tunnel: `${NOT_CARRIED}: meshed traffic is tunnelled over HBONE by the node proxy`,
    proxyProtocol: `${NOT_CARRIED}: the node proxy sends no PROXY protocol header`,
    host: 'is not how a TrafficPolicy attaches: name the Service in spec.targetRefs [{group: "", kind: Service, name: NAME}]',
    subsets: `${NOT_CARRIED}: split traffic between versions with HTTPRoute backendRefs to one Service per version`,
    trafficPolicy: 'write the fields of a DestinationRule\'s trafficPolicy directly under spec (spec.loadBalancer, spec.connectionPool, ...)',
    exportTo: `${NOT_CARRIED}: a TrafficPolicy applies to every client of its Services`,
    workloadSelector: `${NOT_CARRIED}: a TrafficPolicy applies to every client of its Services`,
  },
  loadBalancer: {
    consistentHash: `${NOT_CARRIED} (no session affinity by hash yet); use simple: LEAST_REQUEST or ROUND_ROBIN`,
    localityLbSetting: `${NOT_CARRIED} (no locality-aware load balancing yet)`,
    warmupDurationSecs: `${NOT_CARRIED} (no slow start for new endpoints yet)`,
    warmup: `${NOT_CARRIED} (no slow start for new endpoints yet)`,
  },
  tcp: {
    tcpKeepalive: `${NOT_CARRIED} (upstream TCP keepalive is not configurable yet)`,
    maxConnectionDuration: `${NOT_CARRIED} (connections are not aged out yet)`,
    idleTimeout: `${NOT_CARRIED} for TCP; connectionPool.http.idleTimeout closes idle HTTP connections`,
  },
  http: {
    h2UpgradePolicy: `${NOT_CARRIED}: the node proxy speaks to endpoints the protocol the client spoke`,
    useClientProtocol: `${NOT_CARRIED}: the node proxy always keeps the client's protocol`,
    maxConcurrentStreams: `${NOT_CARRIED} (HTTP/2 streams per connection are not limited per Service yet)`,
  },
  outlierDetection: {
    consecutiveErrors: 'is deprecated in Istio and not read by Weft; write consecutive5xxErrors (or consecutiveGatewayErrors for 502, 503, 504 only)',
  },
  delay: {
    percent: 'is deprecated in Istio and not read by Weft; write percentage: {value: N}',
    exponentialDelay: `${NOT_CARRIED} (Istio does not either); write fixedDelay`,
  },
  abort: {
    percent: 'is deprecated in Istio and not read by Weft; write percentage: {value: N}',
    http2Error: `${NOT_CARRIED}; abort with httpStatus or grpcStatus`,
  },
  retries: {
    retryRemoteLocalities: `${NOT_CARRIED} (no locality-aware load balancing yet)`,
  },
};
/** retryOn values Envoy knows and Weft does not carry out. */
const RETRY_ON_UNSUPPORTED = new Set(['retriable-headers', 'envoy-ratelimited', 'reset-before-request', 'http3-post-connect-failure']);

export function convertTrafficPolicy(c: Checker, obj: Fields, meta: Metadata): TrafficPolicyInfo {
  const spec = c.optionalMapping(obj.spec, 'spec');
  known(c, spec, 'spec', SPEC, 'spec');
  const info: TrafficPolicyInfo = {
    namespace: meta.namespace,
    name: meta.name,
    targets: targetRefs(c, spec.targetRefs),
    settings: settings(c, spec, 'spec'),
    portLevel: [],
  };
  const createdAt = creationTimestamp(c, obj.metadata);
  if (createdAt !== undefined) info.createdAt = createdAt;
  if (spec.portLevelSettings !== undefined) {
    const seen = new Set<number>();
    (c.list(spec.portLevelSettings, 'spec.portLevelSettings') ?? []).forEach((entry, i) => {
      const at = join('spec.portLevelSettings', i);
      const fields = c.mapping(entry, at);
      if (fields === undefined) return;
      known(c, fields, at, PORT_LEVEL, 'spec');
      const port = portSelector(c, fields.port, `${at}.port`);
      const levelSettings = settings(c, fields, at);
      if (port === undefined) return;
      if (seen.has(port)) c.fail(`${at}.port.number`, `port ${port} is already set by an earlier entry of spec.portLevelSettings`);
      seen.add(port);
      if (Object.keys(levelSettings).length === 0) c.fail(at, `sets nothing for port ${port}; add a block (loadBalancer, connectionPool, ...) or leave the entry out`);
      info.portLevel.push({ port, settings: levelSettings });
    });
  }
  return info;
}

/** allowOnly, but an Istio field Weft refuses gets its own reason instead of "unknown field". */
function known(c: Checker, value: Fields, field: string, allowed: ReadonlySet<string>, block: string): void {
  const refused = UNSUPPORTED[block] ?? {};
  const rest: Fields = {};
  for (const [key, entry] of Object.entries(value)) {
    const why = Object.hasOwn(refused, key) ? refused[key] : undefined; // not `constructor` or `__proto__` from Object.prototype
    if (why !== undefined) c.fail(join(field, key), why);
    else rest[key] = entry;
  }
  c.allowOnly(rest, field, allowed);
}

function targetRefs(c: Checker, value: unknown): string[] {
  if (value === undefined) {
    c.fail('spec.targetRefs', 'is required: name the Services this policy applies to, e.g. [{group: "", kind: Service, name: reviews}]');
    return [];
  }
  const list = c.list(value, 'spec.targetRefs') ?? [];
  if (list.length === 0 && Array.isArray(value)) c.fail('spec.targetRefs', 'must not be empty: name at least one Service');
  const names: string[] = [];
  list.forEach((entry, i) => {
    const at = join('spec.targetRefs', i);
    const ref = c.mapping(entry, at);
    if (ref === undefined) return;
    c.allowOnly(ref, at, TARGET_REF);
    if (ref.group !== undefined && ref.group !== '' && ref.group !== 'core') {
      c.fail(`${at}.group`, `must be "" (the core API group of Service), got ${JSON.stringify(ref.group)}`);
    }
    if (ref.kind !== 'Service') c.fail(`${at}.kind`, `must be Service (a TrafficPolicy attaches to Services), got ${JSON.stringify(ref.kind)}`);
    if (ref.sectionName !== undefined) c.fail(`${at}.sectionName`, `${NOT_CARRIED}: set per-port values in spec.portLevelSettings [{port: {number: N}, ...}]`);
    const name = c.dnsLabel(ref.name, `${at}.name`);
    if (name === undefined) return;
    if (names.includes(name)) c.fail(`${at}.name`, `Service ${name} is already named by an earlier entry`);
    else names.push(name);
  });
  return names;
}

function portSelector(c: Checker, value: unknown, field: string): number | undefined {
  if (value === undefined) {
    c.fail(field, 'is required: {number: N}, a port of the target Services');
    return undefined;
  }
  const port = c.mapping(value, field);
  if (port === undefined) return undefined;
  c.allowOnly(port, field, new Set(['number']));
  return c.port(port.number, `${field}.number`);
}

function creationTimestamp(c: Checker, metadata: unknown): number | undefined {
  if (!isMapping(metadata) || metadata.creationTimestamp === undefined || metadata.creationTimestamp === null) return undefined;
  const value = metadata.creationTimestamp;
  const ms = value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : NaN;
  if (Number.isFinite(ms)) return ms;
  c.fail('metadata.creationTimestamp', 'must be an RFC 3339 time such as "2024-05-01T12:00:00Z"');
  return undefined;
}

/** The settings blocks of the spec or of one port-level entry; only the blocks present are set. */
function settings(c: Checker, fields: Fields, field: string): TrafficSettings {
  const out: TrafficSettings = {};
  if (fields.loadBalancer !== undefined) {
    const kind = loadBalancer(c, fields.loadBalancer, join(field, 'loadBalancer'));
    if (kind !== undefined) out.loadBalancer = kind;
  }
  if (fields.connectionPool !== undefined) out.connectionPool = connectionPool(c, fields.connectionPool, join(field, 'connectionPool'));
  if (fields.outlierDetection !== undefined) out.outlierDetection = outlierDetection(c, fields.outlierDetection, join(field, 'outlierDetection'));
  if (fields.fault !== undefined) out.fault = fault(c, fields.fault, join(field, 'fault'));
  if (fields.timeout !== undefined) {
    const ms = duration(c, fields.timeout, join(field, 'timeout'), { zero: 'no timeout' });
    if (ms !== undefined) out.timeoutMs = ms;
  }
  if (fields.retries !== undefined) out.retries = retries(c, fields.retries, join(field, 'retries'));
  return out;
}

function loadBalancer(c: Checker, value: unknown, field: string): LoadBalancerKind | undefined {
  const lb = c.mapping(value, field);
  if (lb === undefined) return undefined;
  known(c, lb, field, LOAD_BALANCER, 'loadBalancer');
  if (lb.simple === undefined) return undefined;
  const simple = c.oneOf(lb.simple, `${field}.simple`, SIMPLE);
  switch (simple) {
    case undefined: return undefined;
    // Istio reads LEAST_CONN as LEAST_REQUEST (deprecated alias) and UNSPECIFIED as the default.
    case 'LEAST_CONN': case 'UNSPECIFIED': return 'LEAST_REQUEST';
    case 'PASSTHROUGH':
      c.fail(`${field}.simple`, `PASSTHROUGH: ${NOT_CARRIED}: a Service's connections always go to an endpoint the node proxy chooses`);
      return undefined;
    default: return simple;
  }
}

function connectionPool(c: Checker, value: unknown, field: string): ConnectionPoolSettings {
  const out: ConnectionPoolSettings = {};
  const pool = c.mapping(value, field);
  if (pool === undefined) return out;
  c.allowOnly(pool, field, CONNECTION_POOL);
  if (pool.tcp !== undefined) {
    const at = `${field}.tcp`;
    const tcp = c.mapping(pool.tcp, at) ?? {};
    known(c, tcp, at, TCP, 'tcp');
    out.tcp = {};
    setIf(out.tcp, 'maxConnections', count(c, tcp.maxConnections, `${at}.maxConnections`, 1));
    setIf(out.tcp, 'connectTimeoutMs', duration(c, tcp.connectTimeout, `${at}.connectTimeout`));
  }
  if (pool.http !== undefined) {
    const at = `${field}.http`;
    const http = c.mapping(pool.http, at) ?? {};
    known(c, http, at, HTTP, 'http');
    out.http = {};
    setIf(out.http, 'http1MaxPendingRequests', count(c, http.http1MaxPendingRequests, `${at}.http1MaxPendingRequests`, 1));
    setIf(out.http, 'http2MaxRequests', count(c, http.http2MaxRequests, `${at}.http2MaxRequests`, 1));
    setIf(out.http, 'maxRequestsPerConnection', count(c, http.maxRequestsPerConnection, `${at}.maxRequestsPerConnection`, 0));
    setIf(out.http, 'maxRetries', count(c, http.maxRetries, `${at}.maxRetries`, 0));
    setIf(out.http, 'idleTimeoutMs', duration(c, http.idleTimeout, `${at}.idleTimeout`));
  }
  return out;
}

function outlierDetection(c: Checker, value: unknown, field: string): OutlierDetectionSettings {
  const out: OutlierDetectionSettings = {};
  const od = c.mapping(value, field);
  if (od === undefined) return out;
  known(c, od, field, OUTLIER, 'outlierDetection');
  setIf(out, 'consecutive5xxErrors', count(c, od.consecutive5xxErrors, `${field}.consecutive5xxErrors`, 0));
  setIf(out, 'consecutiveGatewayErrors', count(c, od.consecutiveGatewayErrors, `${field}.consecutiveGatewayErrors`, 0));
  if (od.splitExternalLocalOriginErrors !== undefined) {
    setIf(out, 'splitExternalLocalOriginErrors', c.boolean(od.splitExternalLocalOriginErrors, `${field}.splitExternalLocalOriginErrors`));
  }
  setIf(out, 'consecutiveLocalOriginFailures', count(c, od.consecutiveLocalOriginFailures, `${field}.consecutiveLocalOriginFailures`, 0));
  if (od.consecutiveLocalOriginFailures !== undefined && od.splitExternalLocalOriginErrors !== true) {
    c.fail(`${field}.consecutiveLocalOriginFailures`, 'is read only with splitExternalLocalOriginErrors: true (as in Istio); otherwise connect failures, resets and timeouts count as 5xx and gateway errors');
  }
  setIf(out, 'intervalMs', duration(c, od.interval, `${field}.interval`));
  setIf(out, 'baseEjectionTimeMs', duration(c, od.baseEjectionTime, `${field}.baseEjectionTime`));
  setIf(out, 'maxEjectionTimeMs', duration(c, od.maxEjectionTime, `${field}.maxEjectionTime`));
  setIf(out, 'maxEjectionPercent', percent(c, od.maxEjectionPercent, `${field}.maxEjectionPercent`, true));
  setIf(out, 'minHealthPercent', percent(c, od.minHealthPercent, `${field}.minHealthPercent`, true));
  if (out.baseEjectionTimeMs !== undefined && out.maxEjectionTimeMs !== undefined && out.maxEjectionTimeMs < out.baseEjectionTimeMs) {
    c.fail(`${field}.maxEjectionTime`, 'must not be shorter than baseEjectionTime');
  }
  return out;
}

function fault(c: Checker, value: unknown, field: string): FaultSettings {
  const out: FaultSettings = {};
  const f = c.mapping(value, field);
  if (f === undefined) return out;
  c.allowOnly(f, field, FAULT);
  if (f.delay === undefined && f.abort === undefined) c.fail(field, 'sets neither delay nor abort; leave the block out to inject no fault');
  if (f.delay !== undefined) {
    const at = `${field}.delay`;
    const delay = c.mapping(f.delay, at);
    if (delay !== undefined) {
      known(c, delay, at, DELAY, 'delay');
      const share = percentage(c, delay.percentage, `${at}.percentage`);
      const fixedDelayMs = required(c, delay.fixedDelay, `${at}.fixedDelay`, 'how long to delay, e.g. 2s') && duration(c, delay.fixedDelay, `${at}.fixedDelay`);
      if (share !== undefined && typeof fixedDelayMs === 'number') out.delay = { percentage: share, fixedDelayMs };
    }
  }
  if (f.abort !== undefined) {
    const at = `${field}.abort`;
    const abort = c.mapping(f.abort, at);
    if (abort !== undefined) {
      known(c, abort, at, ABORT, 'abort');
      const share = percentage(c, abort.percentage, `${at}.percentage`);
      let status: { httpStatus: number } | { grpcStatus: GrpcStatusName } | undefined;
      if (abort.httpStatus !== undefined && abort.grpcStatus !== undefined) c.fail(at, 'sets both httpStatus and grpcStatus; choose one');
      else if (abort.httpStatus !== undefined) {
        const code = integer(c, abort.httpStatus, `${at}.httpStatus`, 200, 599, 'an HTTP status from 200 to 599');
        if (code !== undefined) status = { httpStatus: code };
      } else if (abort.grpcStatus !== undefined) {
        const name = c.oneOf(abort.grpcStatus, `${at}.grpcStatus`, Object.keys(GRPC_STATUS) as GrpcStatusName[]);
        if (name === 'OK') c.fail(`${at}.grpcStatus`, 'OK is not a failure; abort with an error status such as UNAVAILABLE');
        else if (name !== undefined) status = { grpcStatus: name };
      } else c.fail(at, 'needs httpStatus (e.g. 503) or grpcStatus (e.g. UNAVAILABLE)');
      if (share !== undefined && status !== undefined) out.abort = { percentage: share, ...status };
    }
  }
  return out;
}

function retries(c: Checker, value: unknown, field: string): RetrySettings {
  const out: RetrySettings = {};
  const r = c.mapping(value, field);
  if (r === undefined) return out;
  known(c, r, field, RETRIES, 'retries');
  setIf(out, 'attempts', count(c, r.attempts, `${field}.attempts`, 0));
  setIf(out, 'perTryTimeoutMs', duration(c, r.perTryTimeout, `${field}.perTryTimeout`));
  setIf(out, 'backoffMs', duration(c, r.backoff, `${field}.backoff`));
  if (r.retryOn !== undefined) setIf(out, 'retryOn', retryOn(c, r.retryOn, `${field}.retryOn`));
  if (r.retryBudget !== undefined) {
    const at = `${field}.retryBudget`;
    const budget = c.mapping(r.retryBudget, at) ?? {};
    c.allowOnly(budget, at, RETRY_BUDGET);
    out.retryBudget = {};
    setIf(out.retryBudget, 'percent', percent(c, budget.percent, `${at}.percent`, false));
    setIf(out.retryBudget, 'minRetryConcurrency', count(c, budget.minRetryConcurrency, `${at}.minRetryConcurrency`, 0));
  }
  return out;
}

/** Istio's `retryOn`: Envoy's conditions, comma-separated; a status code (`503`) means retriable-status-codes with that code. */
export function retryOn(c: Checker, value: unknown, field: string): RetryOn | undefined {
  const text = c.string(value, field);
  if (text === undefined) return undefined;
  const out: RetryOn = { conditions: [], codes: [] };
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (/^\d+$/.test(item)) {
      const code = Number(item);
      if (code < 100 || code > 599) c.fail(field, `"${item}" is not an HTTP status (100 to 599)`);
      else if (!out.codes.includes(code)) out.codes.push(code);
    } else if ((RETRY_CONDITIONS as readonly string[]).includes(item)) {
      if (!out.conditions.includes(item as RetryCondition)) out.conditions.push(item as RetryCondition);
    } else if (RETRY_ON_UNSUPPORTED.has(item)) {
      c.fail(field, `"${item}": ${NOT_CARRIED}; Weft retries on ${RETRY_CONDITIONS.join(', ')} and status codes`);
    } else {
      c.fail(field, `"${item}" is not a retry condition; write a comma-separated list of ${RETRY_CONDITIONS.join(', ')} or status codes such as 503`);
    }
  }
  if (out.codes.length > 0 && !out.conditions.includes('retriable-status-codes')) out.conditions.push('retriable-status-codes');
  return out;
}

function setIf<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined | false): void {
  if (value !== undefined && value !== false) target[key] = value as T[K];
}

function required(c: Checker, value: unknown, field: string, what: string): boolean {
  if (value !== undefined) return true;
  c.fail(field, `is required: ${what}`);
  return false;
}

function integer(c: Checker, value: unknown, field: string, min: number, max: number, what: string): number | undefined {
  if (Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max) return value as number;
  c.fail(field, `must be ${what}${typeof value === 'string' ? ' (a number, not a string)' : ''}`);
  return undefined;
}

/** An optional count: an integer from `min` (0 disables or means "none", as the field says; 1 where 0 would block all traffic). */
function count(c: Checker, value: unknown, field: string, min: 0 | 1): number | undefined {
  if (value === undefined) return undefined;
  const what = min === 1 ? 'a positive integer (leave the field out for no limit)' : 'an integer, 0 or more';
  return integer(c, value, field, min, 2 ** 32 - 1, what);
}

/** A whole percentage (Istio's int32 fields: maxEjectionPercent, minHealthPercent) or any number 0-100. */
function percent(c: Checker, value: unknown, field: string, whole: boolean): number | undefined {
  if (value === undefined) return undefined;
  if (whole) return integer(c, value, field, 0, 100, 'a whole percentage from 0 to 100');
  if (typeof value === 'number' && value >= 0 && value <= 100) return value;
  c.fail(field, 'must be a percentage from 0 to 100');
  return undefined;
}

/** Istio's `Percent`: `{value: 12.5}`, 0 to 100; required in a fault (Istio's versions read an absent one differently). */
function percentage(c: Checker, value: unknown, field: string): number | undefined {
  if (!required(c, value, field, 'the share of requests, e.g. {value: 10} for 10%')) return undefined;
  const p = c.mapping(value, field);
  if (p === undefined) return undefined;
  c.allowOnly(p, field, PERCENTAGE);
  if (typeof p.value === 'number' && p.value >= 0 && p.value <= 100) return p.value;
  c.fail(`${field}.value`, 'must be a number from 0 to 100');
  return undefined;
}

/** An optional duration, in ms: whole milliseconds, at least 1ms (or 0 when `zero` says what 0 means). */
function duration(c: Checker, value: unknown, field: string, options: { zero?: string } = {}): number | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === 'string' ? value : undefined;
  const ms = text === undefined ? undefined : parseDurationMs(text);
  if (ms === undefined) {
    c.fail(field, `must be a duration such as "1.5s", "100ms", "2m" or "1h"${typeof value === 'number' ? ' (a number needs a unit)' : ''}`);
    return undefined;
  }
  if (ms === 0 && options.zero !== undefined) return 0;
  if (!Number.isInteger(ms) || ms < 1) {
    c.fail(field, `"${text}" must be at least 1ms and a whole number of milliseconds${options.zero !== undefined ? ` (or 0s for ${options.zero})` : ''}`);
    return undefined;
  }
  if (ms > 2 ** 31 - 1) {
    c.fail(field, `"${text}" is too long (at most about 24 days)`);
    return undefined;
  }
  return ms;
}
