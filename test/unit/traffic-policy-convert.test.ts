import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError, type ConfigError } from '../../agent/config/config-error';
import { parseConfig } from '../../agent/config/parse';
import {
  DEFAULTS, trafficPolicyConflicts, trafficPolicyFor, UNLIMITED, type TrafficPolicyInfo,
} from '../../agent/traffic';

/** TrafficPolicy through the config parser: every problem named by object and field, defaults filled per Service port. */

const header = (name = 'tp', extraMeta = ''): string =>
  `apiVersion: networking.weft.dev/v1\nkind: TrafficPolicy\nmetadata: { name: ${name}, namespace: shop${extraMeta} }\n`;
const TARGET = '  targetRefs: [{ group: "", kind: Service, name: reviews }]\n';

function policies(yaml: string): TrafficPolicyInfo[] {
  const result = parseConfig(yaml, 'test.yaml');
  assert.ok(result.ok, result.ok ? '' : result.error.map(formatConfigError).join('\n'));
  return result.value.trafficPolicies ?? [];
}

function errorsOf(spec: string): ConfigError[] {
  const result = parseConfig(`${header()}spec:\n${spec}`, 'test.yaml');
  assert.equal(result.ok, false, 'expected the policy to be rejected');
  return result.ok ? [] : result.error;
}

/** Exactly these problems, each on `TrafficPolicy shop/tp` at `field`, its message matching. */
function rejects(spec: string, expected: [field: string, message: RegExp][]): void {
  const errors = errorsOf(spec);
  const shown = errors.map(formatConfigError).join('\n');
  assert.deepEqual(errors.map((e) => [e.object, e.field]), expected.map(([field]) => ['TrafficPolicy shop/tp', field]), shown);
  expected.forEach(([, message], i) => assert.match(errors[i]!.message, message, shown));
}

describe('TrafficPolicy: rejected, by object and field', () => {
  const table: [name: string, spec: string, expected: [string, RegExp][]][] = [
    ['no targetRefs', '  timeout: 1s\n', [['spec.targetRefs', /is required: name the Services/]]],
    ['empty targetRefs', '  targetRefs: []\n', [['spec.targetRefs', /must not be empty/]]],
    ['a target that is not a Service', '  targetRefs: [{ group: apps, kind: Deployment, name: reviews }]\n', [
      ['spec.targetRefs[0].group', /must be "" \(the core API group of Service\)/],
      ['spec.targetRefs[0].kind', /must be Service/],
    ]],
    ['a target sectionName', '  targetRefs: [{ group: "", kind: Service, name: reviews, sectionName: http }]\n', [['spec.targetRefs[0].sectionName', /does not carry it out: set per-port values in spec.portLevelSettings/]]],
    ['the same Service twice', '  targetRefs: [{ kind: Service, name: reviews }, { kind: Service, name: reviews }]\n', [['spec.targetRefs[1].name', /already named/]]],
    ['targetRef (singular)', '  targetRef: { kind: Service, name: reviews }\n', [['spec.targetRef', /did you mean "targetRefs"\?/], ['spec.targetRefs', /is required/]]],
    ['tls', `${TARGET}  tls: { mode: ISTIO_MUTUAL }\n`, [['spec.tls', /Weft does not carry it out: traffic between meshed pods always uses the mesh's own mTLS/]]],
    ['tunnel', `${TARGET}  tunnel: { protocol: CONNECT, targetHost: x, targetPort: 1 }\n`, [['spec.tunnel', /does not carry it out/]]],
    ['a DestinationRule pasted whole', `${TARGET}  host: reviews\n  trafficPolicy: {}\n`, [['spec.host', /spec.targetRefs/], ['spec.trafficPolicy', /directly under spec/]]],
    ['consistentHash', `${TARGET}  loadBalancer: { consistentHash: { httpHeaderName: x } }\n`, [['spec.loadBalancer.consistentHash', /does not carry it out \(no session affinity/]]],
    ['localityLbSetting', `${TARGET}  loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { enabled: true } }\n`, [['spec.loadBalancer.localityLbSetting', /does not carry it out/]]],
    ['warmup', `${TARGET}  loadBalancer: { warmupDurationSecs: 10s }\n`, [['spec.loadBalancer.warmupDurationSecs', /slow start/]]],
    ['PASSTHROUGH', `${TARGET}  loadBalancer: { simple: PASSTHROUGH }\n`, [['spec.loadBalancer.simple', /PASSTHROUGH: Weft does not carry it out/]]],
    ['an unknown algorithm', `${TARGET}  loadBalancer: { simple: FASTEST }\n`, [['spec.loadBalancer.simple', /must be one of LEAST_REQUEST, ROUND_ROBIN, RANDOM/]]],
    ['tcpKeepalive', `${TARGET}  connectionPool: { tcp: { tcpKeepalive: { time: 1s } } }\n`, [['spec.connectionPool.tcp.tcpKeepalive', /does not carry it out/]]],
    ['h2UpgradePolicy', `${TARGET}  connectionPool: { http: { h2UpgradePolicy: UPGRADE } }\n`, [['spec.connectionPool.http.h2UpgradePolicy', /does not carry it out/]]],
    ['maxConnections 0', `${TARGET}  connectionPool: { tcp: { maxConnections: 0 } }\n`, [['spec.connectionPool.tcp.maxConnections', /positive integer \(leave the field out for no limit\)/]]],
    ['a count as a string', `${TARGET}  connectionPool: { http: { http2MaxRequests: "100" } }\n`, [['spec.connectionPool.http.http2MaxRequests', /positive integer.*\(a number, not a string\)/]]],
    ['a negative count', `${TARGET}  connectionPool: { http: { maxRetries: -1 } }\n`, [['spec.connectionPool.http.maxRetries', /an integer, 0 or more/]]],
    ['a near miss in the pool', `${TARGET}  connectionPool: { http: { http1MaxPendingRequest: 1 } }\n`, [['spec.connectionPool.http.http1MaxPendingRequest', /did you mean "http1MaxPendingRequests"\?/]]],
    ['a duration without a unit', `${TARGET}  connectionPool: { tcp: { connectTimeout: 10 } }\n`, [['spec.connectionPool.tcp.connectTimeout', /must be a duration such as "1.5s".*\(a number needs a unit\)/]]],
    ['a duration below 1ms', `${TARGET}  outlierDetection: { interval: 500us }\n`, [['spec.outlierDetection.interval', /"500us" must be at least 1ms and a whole number of milliseconds/]]],
    ['a malformed duration', `${TARGET}  timeout: 1.5 s\n`, [['spec.timeout', /must be a duration/]]],
    ['consecutiveErrors (deprecated)', `${TARGET}  outlierDetection: { consecutiveErrors: 5 }\n`, [['spec.outlierDetection.consecutiveErrors', /deprecated in Istio.*consecutive5xxErrors/]]],
    ['maxEjectionPercent over 100', `${TARGET}  outlierDetection: { maxEjectionPercent: 150 }\n`, [['spec.outlierDetection.maxEjectionPercent', /whole percentage from 0 to 100/]]],
    ['minHealthPercent as a fraction', `${TARGET}  outlierDetection: { minHealthPercent: 12.5 }\n`, [['spec.outlierDetection.minHealthPercent', /whole percentage/]]],
    ['local-origin failures without the split', `${TARGET}  outlierDetection: { consecutiveLocalOriginFailures: 3 }\n`, [['spec.outlierDetection.consecutiveLocalOriginFailures', /only with splitExternalLocalOriginErrors: true/]]],
    ['maxEjectionTime below base', `${TARGET}  outlierDetection: { baseEjectionTime: 1m, maxEjectionTime: 30s }\n`, [['spec.outlierDetection.maxEjectionTime', /not be shorter than baseEjectionTime/]]],
    ['an empty fault', `${TARGET}  fault: {}\n`, [['spec.fault', /neither delay nor abort/]]],
    ['a fault percentage over 100', `${TARGET}  fault: { abort: { percentage: { value: 101 }, httpStatus: 503 } }\n`, [['spec.fault.abort.percentage.value', /0 to 100/]]],
    ['a fault without percentage', `${TARGET}  fault: { delay: { fixedDelay: 2s } }\n`, [['spec.fault.delay.percentage', /is required: the share of requests/]]],
    ['a delay without fixedDelay', `${TARGET}  fault: { delay: { percentage: { value: 10 } } }\n`, [['spec.fault.delay.fixedDelay', /is required: how long/]]],
    ['the deprecated integer percent', `${TARGET}  fault: { delay: { percent: 10, fixedDelay: 1s } }\n`, [['spec.fault.delay.percent', /deprecated in Istio.*percentage: \{value: N\}/], ['spec.fault.delay.percentage', /is required/]]],
    ['an abort status out of range', `${TARGET}  fault: { abort: { percentage: { value: 5 }, httpStatus: 600 } }\n`, [['spec.fault.abort.httpStatus', /HTTP status from 200 to 599/]]],
    ['an abort without a status', `${TARGET}  fault: { abort: { percentage: { value: 5 } } }\n`, [['spec.fault.abort', /needs httpStatus .* or grpcStatus/]]],
    ['an abort with both statuses', `${TARGET}  fault: { abort: { percentage: { value: 5 }, httpStatus: 503, grpcStatus: UNAVAILABLE } }\n`, [['spec.fault.abort', /both httpStatus and grpcStatus/]]],
    ['an unknown gRPC status', `${TARGET}  fault: { abort: { percentage: { value: 5 }, grpcStatus: BROKEN } }\n`, [['spec.fault.abort.grpcStatus', /must be one of OK, CANCELLED/]]],
    ['http2Error', `${TARGET}  fault: { abort: { percentage: { value: 5 }, http2Error: REFUSED_STREAM } }\n`, [['spec.fault.abort.http2Error', /does not carry it out/], ['spec.fault.abort', /needs httpStatus/]]],
    ['an unknown retry condition', `${TARGET}  retries: { retryOn: "5xx,sometimes" }\n`, [['spec.retries.retryOn', /"sometimes" is not a retry condition/]]],
    ['an Envoy condition Weft does not carry out', `${TARGET}  retries: { retryOn: "envoy-ratelimited" }\n`, [['spec.retries.retryOn', /"envoy-ratelimited": Weft does not carry it out/]]],
    ['a retry status out of range', `${TARGET}  retries: { retryOn: "5xx,999" }\n`, [['spec.retries.retryOn', /"999" is not an HTTP status/]]],
    ['retryRemoteLocalities', `${TARGET}  retries: { attempts: 2, retryRemoteLocalities: true }\n`, [['spec.retries.retryRemoteLocalities', /does not carry it out/]]],
    ['a budget over 100%', `${TARGET}  retries: { retryBudget: { percent: 120 } }\n`, [['spec.retries.retryBudget.percent', /percentage from 0 to 100/]]],
    ['portLevelSettings without a port', `${TARGET}  portLevelSettings: [{ timeout: 1s }]\n`, [['spec.portLevelSettings[0].port', /is required: \{number: N\}/]]],
    ['portLevelSettings with a bad port', `${TARGET}  portLevelSettings: [{ port: { number: 70000 }, timeout: 1s }]\n`, [['spec.portLevelSettings[0].port.number', /port number/]]],
    ['the same port twice', `${TARGET}  portLevelSettings: [{ port: { number: 80 }, timeout: 1s }, { port: { number: 80 }, timeout: 2s }]\n`, [['spec.portLevelSettings[1].port.number', /port 80 is already set/]]],
    ['a port entry that sets nothing', `${TARGET}  portLevelSettings: [{ port: { number: 80 } }]\n`, [['spec.portLevelSettings[0]', /sets nothing for port 80/]]],
    ['targetRefs inside a port entry', `${TARGET}  portLevelSettings: [{ port: { number: 80 }, targetRefs: [], timeout: 1s }]\n`, [['spec.portLevelSettings[0].targetRefs', /unknown field/]]],
    ['tls inside a port entry', `${TARGET}  portLevelSettings: [{ port: { number: 80 }, tls: { mode: DISABLE }, timeout: 1s }]\n`, [['spec.portLevelSettings[0].tls', /mesh's own mTLS/]]],
  ];
  for (const [name, spec, expected] of table) it(name, () => rejects(spec, expected));

  it('a creationTimestamp that is not a time', () => {
    const result = parseConfig(`${header('tp', ', creationTimestamp: yesterday')}spec:\n${TARGET}`, 'test.yaml');
    assert.equal(result.ok, false);
    if (!result.ok) assert.deepEqual(result.error.map((e) => [e.object, e.field]), [['TrafficPolicy shop/tp', 'metadata.creationTimestamp']]);
  });

  it('every problem of one object is reported in one pass', () => {
    const errors = errorsOf(`${TARGET}  timeout: soon\n  loadBalancer: { simple: FASTEST }\n  outlierDetection: { maxEjectionPercent: -1 }\n`);
    assert.deepEqual(errors.map((e) => e.field), ['spec.loadBalancer.simple', 'spec.outlierDetection.maxEjectionPercent', 'spec.timeout']);
  });
});

describe('TrafficPolicy: accepted and resolved', () => {
  const FULL = `${header()}spec:
${TARGET}  loadBalancer: { simple: ROUND_ROBIN }
  connectionPool:
    tcp: { maxConnections: 100, connectTimeout: 250ms }
    http: { http1MaxPendingRequests: 10, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 1h30m }
  outlierDetection: { consecutive5xxErrors: 7, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4, interval: 1.5s, baseEjectionTime: 2m, maxEjectionTime: 10m, maxEjectionPercent: 50, minHealthPercent: 25 }
  fault:
    delay: { percentage: { value: 10 }, fixedDelay: 2s }
    abort: { percentage: { value: 5.5 }, httpStatus: 503 }
  timeout: 5s
  retries: { attempts: 4, perTryTimeout: 1s, retryOn: "gateway-error,connect-failure,409,503", backoff: 50ms, retryBudget: { percent: 50, minRetryConcurrency: 1 } }
`;

  it('every field, converted once: durations in ms, the status codes of retryOn as retriable-status-codes', () => {
    const [p] = policies(FULL);
    const r = trafficPolicyFor([p!], { namespace: 'shop', name: 'reviews' }, 9080);
    assert.deepEqual(r, {
      source: 'shop/tp',
      ignored: [],
      loadBalancer: 'ROUND_ROBIN',
      connectionPool: { maxConnections: 100, connectTimeoutMs: 250, maxPendingRequests: 10, maxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeoutMs: 5_400_000 },
      outlierDetection: {
        enabled: true, consecutive5xxErrors: 7, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4,
        intervalMs: 1500, baseEjectionTimeMs: 120_000, maxEjectionTimeMs: 600_000, maxEjectionPercent: 50, minHealthPercent: 25,
      },
      fault: { delay: { percentage: 10, fixedDelayMs: 2000 }, abort: { percentage: 5.5, httpStatus: 503 } },
      timeoutMs: 5000,
      retries: {
        attempts: 4, perTryTimeoutMs: 1000, backoffMs: 50,
        retryOn: { conditions: ['gateway-error', 'connect-failure', 'retriable-status-codes'], codes: [409, 503] },
        budget: { percent: 50, minRetryConcurrency: 1 },
      },
    });
  });

  it('a Service no policy targets gets the defaults: Istio\'s (open breakers, no ejection, retries 2 on connect-failure/503), Envoy\'s budget', () => {
    const r = trafficPolicyFor(policies(FULL), { namespace: 'shop', name: 'ratings' }, 80);
    assert.equal(r.source, undefined);
    assert.equal(r.loadBalancer, 'LEAST_REQUEST');
    assert.deepEqual(r.connectionPool, {
      maxConnections: UNLIMITED, connectTimeoutMs: 10_000, maxPendingRequests: UNLIMITED, maxRequests: UNLIMITED,
      maxRequestsPerConnection: 0, maxRetries: UNLIMITED, idleTimeoutMs: 3_600_000,
    });
    assert.equal(r.outlierDetection.enabled, false);
    assert.deepEqual(r.fault, {});
    assert.equal(r.timeoutMs, 0);
    assert.deepEqual(r.retries, {
      attempts: 2, perTryTimeoutMs: 0, backoffMs: 25,
      retryOn: { conditions: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], codes: [503] },
      budget: { percent: 20, minRetryConcurrency: 3 },
    });
    // Same name in another namespace: a TrafficPolicy targets Services of its own namespace only.
    assert.equal(trafficPolicyFor(policies(FULL), { namespace: 'other', name: 'reviews' }, 80).source, undefined);
  });

  it('an empty outlierDetection block turns detection on with Istio\'s defaults', () => {
    const r = trafficPolicyFor(policies(`${header()}spec:\n${TARGET}  outlierDetection: {}\n`), { namespace: 'shop', name: 'reviews' }, 80);
    assert.deepEqual(r.outlierDetection, {
      enabled: true, consecutive5xxErrors: 5, consecutiveGatewayErrors: 0, splitExternalLocalOriginErrors: false, consecutiveLocalOriginFailures: 5,
      intervalMs: DEFAULTS.intervalMs, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 10, minHealthPercent: 0,
    });
  });

  it('LEAST_CONN reads as LEAST_REQUEST (Istio\'s deprecated alias); a timeout of 0s means none; gRPC aborts by name', () => {
    const [p] = policies(`${header()}spec:\n${TARGET}  loadBalancer: { simple: LEAST_CONN }\n  timeout: 0s\n  fault: { abort: { percentage: { value: 100 }, grpcStatus: UNAVAILABLE } }\n`);
    const r = trafficPolicyFor([p!], { namespace: 'shop', name: 'reviews' }, 80);
    assert.equal(r.loadBalancer, 'LEAST_REQUEST');
    assert.equal(r.timeoutMs, 0);
    assert.deepEqual(r.fault, { abort: { percentage: 100, grpcStatus: 'UNAVAILABLE' } });
  });

  it('portLevelSettings replace whole blocks for their port, the others are inherited (Istio\'s merge)', () => {
    const [p] = policies(`${header()}spec:
${TARGET}  loadBalancer: { simple: ROUND_ROBIN }
  connectionPool: { tcp: { maxConnections: 10 }, http: { maxRetries: 1 } }
  timeout: 3s
  portLevelSettings:
    - port: { number: 9080 }
      connectionPool: { http: { http2MaxRequests: 5 } }
`);
    const onPort = trafficPolicyFor([p!], { namespace: 'shop', name: 'reviews' }, 9080);
    assert.equal(onPort.loadBalancer, 'ROUND_ROBIN');
    assert.equal(onPort.timeoutMs, 3000);
    assert.equal(onPort.connectionPool.maxRequests, 5);
    assert.equal(onPort.connectionPool.maxConnections, UNLIMITED, 'the port-level connectionPool replaces the policy-level one whole');
    assert.equal(onPort.connectionPool.maxRetries, UNLIMITED);
    const other = trafficPolicyFor([p!], { namespace: 'shop', name: 'reviews' }, 80);
    assert.equal(other.connectionPool.maxConnections, 10);
    assert.equal(other.connectionPool.maxRetries, 1);
    assert.equal(other.connectionPool.maxRequests, UNLIMITED);
  });

  it('two policies on one Service: the oldest by creationTimestamp wins, the other is reported; without timestamps, by name', () => {
    const yaml = [
      `${header('newer', ', creationTimestamp: "2024-05-02T00:00:00Z"')}spec:\n  targetRefs: [{ kind: Service, name: reviews }, { kind: Service, name: ratings }]\n  timeout: 2s\n`,
      `${header('aaa-older', ', creationTimestamp: "2024-05-01T00:00:00Z"')}spec:\n${TARGET}  timeout: 1s\n`,
      `${header('b-plain')}spec:\n  targetRefs: [{ kind: Service, name: details }]\n  timeout: 5s\n`,
      `${header('a-plain')}spec:\n  targetRefs: [{ kind: Service, name: details }]\n  timeout: 4s\n`,
    ].join('---\n');
    const all = policies(yaml);
    const reviews = trafficPolicyFor(all, { namespace: 'shop', name: 'reviews' }, 80);
    assert.equal(reviews.source, 'shop/aaa-older');
    assert.equal(reviews.timeoutMs, 1000);
    assert.deepEqual(reviews.ignored, ['shop/newer']);
    assert.equal(trafficPolicyFor(all, { namespace: 'shop', name: 'ratings' }, 80).source, 'shop/newer', 'the loser still applies where it is alone');
    const details = trafficPolicyFor(all, { namespace: 'shop', name: 'details' }, 80);
    assert.equal(details.source, 'shop/a-plain');
    assert.deepEqual(details.ignored, ['shop/b-plain']);
    assert.deepEqual(trafficPolicyConflicts(all).map((c) => [c.policy, c.service, c.winner]), [
      ['shop/b-plain', 'shop/details', 'shop/a-plain'],
      ['shop/newer', 'shop/reviews', 'shop/aaa-older'],
    ]);
    assert.match(trafficPolicyConflicts(all)[1]!.message, /TrafficPolicy shop\/newer is not applied to Service shop\/reviews: TrafficPolicy shop\/aaa-older targets it too and is older/);
  });
});
