import { checkLimits, DEFAULT_HTTP_LIMITS, type HttpLimits } from '../http/limits';
import { PATH_NORMALIZATIONS, type PathNormalization } from '../http/path-normalize';
import { DEFAULT_FAIRNESS, FAIRNESS_BOUNDS, type FairnessConfig } from '../proxy/fairness';
import type { Checker, Fields } from './checker';
import type { Metadata } from './metadata';

/**
 * `ProxyConfig` (`config.weft.dev/v1`, cluster-scoped, named `default`): the node proxy's HTTP
 * limits and protocol detection, by the names the proxy uses (agent/http/limits.ts). Every field is
 * optional; what is absent keeps its default.
 *
 *   spec:
 *     protocolDetectionTimeoutMs: 200   # how long a silent client on an undeclared port is waited for
 *     http: { maxHeaderBytes: 61440, maxRequestBodyBytes: 1073741824, headersTimeoutMs: 60000, ... }
 *     tracing: { otlpEndpoint: http://otel-collector.observability:4318/v1/traces, samplingPercent: 1, serviceName: mesh }
 *     accessLog: { enabled: true, level: all, samplingPercent: 100 }   # level: all | errors | denials
 *     telemetry: { metrics: true }   # false: no Istio request/TCP metrics and no live view, only the agent's health
 *     sameNodeSplice: true   # false: same-node TCP connections are relayed in user space, not spliced in the kernel (docs/splice.md)
 *     fairness: { maxConnectionsPerPod: 1024, maxPendingPerPod: 128, readBudgetBytes: 262144, overloadLagMs: 20, shedMs: 200 }   # docs/fairness.md
 *     pathNormalization: { normalization: BASE }   # NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES, as Istio's meshConfig (docs/http.md)
 */
export interface ProxyConfigInfo {
  protocolDetectionTimeoutMs: number;
  http: HttpLimits;
  /** absent: tracing off (no spans, trace headers pass unchanged) */
  tracing?: TracingConfig;
  /** absent: every line (telemetry/access-log-policy.ts DEFAULT_ACCESS_LOG) */
  accessLog?: AccessLogConfig;
  /** absent: metrics on */
  telemetry?: TelemetryConfig;
  /** absent: on. false: same-node plain TCP is relayed by the proxy instead of spliced in the kernel (docs/splice.md) */
  sameNodeSplice?: boolean;
  /** absent: DEFAULT_FAIRNESS (proxy/fairness.ts); given, every field it leaves out keeps its default */
  fairness?: FairnessConfig;
  /** how request paths are normalized before policy, routes, logs and the application see them (http/path-normalize.ts); absent: BASE */
  pathNormalization?: { normalization: PathNormalization };
}

/** Which access-log lines are kept: `all`; `errors` (status >= 400, no response, a response flag, an error, and denials); `denials`. */
export type AccessLogLevel = 'all' | 'errors' | 'denials';
const ACCESS_LOG_LEVELS: readonly AccessLogLevel[] = ['all', 'errors', 'denials'];

/** `spec.accessLog` (docs/metrics.md, "Access log and telemetry switches"). */
export interface AccessLogConfig {
  /** false: no access-log line at all (default true) */
  enabled: boolean;
  /** default `all` */
  level: AccessLogLevel;
  /** the share of successful lines kept, 0..100 (default 100); errors and denials are never sampled away */
  samplingPercent: number;
}

/** `spec.telemetry`: switches applied from each snapshot, without restart. */
export interface TelemetryConfig {
  /** false: the proxy's Istio metrics and live view stop listening; /metrics serves the agent's health only (default true) */
  metrics: boolean;
}
const ACCESS_LOG_FIELDS = new Set(['enabled', 'level', 'samplingPercent']);
const TELEMETRY_FIELDS = new Set(['metrics']);

/** `spec.tracing`: spans for each HTTP hop, exported over OTLP/HTTP (docs/tracing.md). */
export interface TracingConfig {
  /** the OTLP/HTTP traces URL; one without a path gets `/v1/traces` */
  otlpEndpoint: string;
  /** the share of new traces recorded, 0..100 (default 1, as Istio); a request's own sampled flag always wins */
  samplingPercent: number;
  /** a fixed `service.name` for the spans; absent: `<workload>.<namespace>` of the workload each hop acts for */
  serviceName?: string;
}

export const DEFAULT_SAMPLING_PERCENT = 1;
const TRACING_FIELDS = new Set(['otlpEndpoint', 'samplingPercent', 'serviceName']);

export const PROXY_CONFIG_NAME = 'default';
export const DEFAULT_PROTOCOL_DETECTION_MS = 200;

export function defaultProxyConfig(): ProxyConfigInfo {
  return { protocolDetectionTimeoutMs: DEFAULT_PROTOCOL_DETECTION_MS, http: { ...DEFAULT_HTTP_LIMITS } };
}

const SPEC = new Set(['protocolDetectionTimeoutMs', 'http', 'tracing', 'accessLog', 'telemetry', 'sameNodeSplice', 'fairness', 'pathNormalization']);
const PATH_NORMALIZATION_FIELDS = new Set(['normalization']);
const FAIRNESS_FIELDS = new Set(Object.keys(DEFAULT_FAIRNESS));
const HTTP_FIELDS = new Set([...Object.keys(DEFAULT_HTTP_LIMITS), 'maxRequestBodyBytes']);

export function convertProxyConfig(c: Checker, obj: Fields, meta: Metadata): ProxyConfigInfo {
  if (meta.name !== '' && meta.name !== PROXY_CONFIG_NAME) c.fail('metadata.name', `must be "${PROXY_CONFIG_NAME}": there is one ProxyConfig`);
  const spec = c.optionalMapping(obj.spec, 'spec');
  c.allowOnly(spec, 'spec', SPEC);
  const config = defaultProxyConfig();
  if (spec.protocolDetectionTimeoutMs !== undefined) {
    const ms = spec.protocolDetectionTimeoutMs;
    if (Number.isInteger(ms) && (ms as number) >= 1 && (ms as number) <= 10_000) config.protocolDetectionTimeoutMs = ms as number;
    else c.fail('spec.protocolDetectionTimeoutMs', 'must be a whole number of milliseconds from 1 to 10000');
  }
  const http = c.optionalMapping(spec.http, 'spec.http');
  c.allowOnly(http, 'spec.http', HTTP_FIELDS);
  for (const [key, value] of Object.entries(http)) {
    if (!HTTP_FIELDS.has(key)) continue;
    if (Number.isSafeInteger(value) && (value as number) >= 0) (config.http as unknown as Record<string, number>)[key] = value as number;
    else c.fail(`spec.http.${key}`, 'must be a non-negative whole number');
  }
  const checked = checkLimits(config.http);
  if (!checked.ok) c.fail('spec.http', checked.error.replace(/HttpLimits\./g, ''));
  if (spec.tracing !== undefined) {
    const tracing = convertTracing(c, spec.tracing);
    if (tracing !== undefined) config.tracing = tracing;
  }
  if (spec.accessLog !== undefined) config.accessLog = convertAccessLog(c, spec.accessLog);
  if (spec.telemetry !== undefined) {
    const t = c.optionalMapping(spec.telemetry, 'spec.telemetry');
    c.allowOnly(t, 'spec.telemetry', TELEMETRY_FIELDS);
    config.telemetry = { metrics: t.metrics === undefined ? true : c.boolean(t.metrics, 'spec.telemetry.metrics') ?? true };
  }
  if (spec.fairness !== undefined) config.fairness = convertFairness(c, spec.fairness);
  if (spec.sameNodeSplice !== undefined) {
    const on = c.boolean(spec.sameNodeSplice, 'spec.sameNodeSplice');
    if (on !== undefined) config.sameNodeSplice = on;
  }
  if (spec.pathNormalization !== undefined) {
    const n = c.optionalMapping(spec.pathNormalization, 'spec.pathNormalization');
    c.allowOnly(n, 'spec.pathNormalization', PATH_NORMALIZATION_FIELDS);
    if (n.normalization !== undefined) {
      if (PATH_NORMALIZATIONS.includes(n.normalization as PathNormalization)) config.pathNormalization = { normalization: n.normalization as PathNormalization };
      else c.fail('spec.pathNormalization.normalization', `must be one of ${PATH_NORMALIZATIONS.join(', ')}, got ${JSON.stringify(n.normalization)}`);
    }
  }
  return config;
}

/** `spec.fairness`: whole numbers within FAIRNESS_BOUNDS; what is absent keeps its default. */
function convertFairness(c: Checker, value: unknown): FairnessConfig {
  const f = c.optionalMapping(value, 'spec.fairness');
  c.allowOnly(f, 'spec.fairness', FAIRNESS_FIELDS);
  const out: FairnessConfig = { ...DEFAULT_FAIRNESS };
  for (const key of Object.keys(DEFAULT_FAIRNESS) as Array<keyof FairnessConfig>) {
    const v = f[key];
    if (v === undefined) continue;
    const [min, max] = FAIRNESS_BOUNDS[key];
    if (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max) out[key] = v as number;
    else c.fail(`spec.fairness.${key}`, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return out;
}

function convertAccessLog(c: Checker, value: unknown): AccessLogConfig {
  const a = c.optionalMapping(value, 'spec.accessLog');
  c.allowOnly(a, 'spec.accessLog', ACCESS_LOG_FIELDS);
  const out: AccessLogConfig = { enabled: true, level: 'all', samplingPercent: 100 };
  if (a.enabled !== undefined) out.enabled = c.boolean(a.enabled, 'spec.accessLog.enabled') ?? true;
  if (a.level !== undefined) {
    if (ACCESS_LOG_LEVELS.includes(a.level as AccessLogLevel)) out.level = a.level as AccessLogLevel;
    else c.fail('spec.accessLog.level', `must be one of ${ACCESS_LOG_LEVELS.join(', ')}, got ${JSON.stringify(a.level)}`);
  }
  if (a.samplingPercent !== undefined) {
    const p = a.samplingPercent;
    if (typeof p === 'number' && Number.isFinite(p) && p >= 0 && p <= 100) out.samplingPercent = p;
    else c.fail('spec.accessLog.samplingPercent', `must be a number from 0 to 100 (the share of successful lines kept), got ${JSON.stringify(p)}`);
  }
  return out;
}

function convertTracing(c: Checker, value: unknown): TracingConfig | undefined {
  const t = c.mapping(value, 'spec.tracing');
  if (t === undefined) return undefined;
  c.allowOnly(t, 'spec.tracing', TRACING_FIELDS);
  const endpoint = c.string(t.otlpEndpoint, 'spec.tracing.otlpEndpoint');
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try { url = new URL(endpoint); } catch { /* reported below */ }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      c.fail('spec.tracing.otlpEndpoint', `"${endpoint}" is not an http:// or https:// URL (e.g. http://otel-collector.observability:4318/v1/traces)`);
      return undefined;
    }
  }
  let percent = DEFAULT_SAMPLING_PERCENT;
  if (t.samplingPercent !== undefined) {
    const p = t.samplingPercent;
    if (typeof p === 'number' && Number.isFinite(p) && p >= 0 && p <= 100) percent = p;
    else { c.fail('spec.tracing.samplingPercent', 'must be a number from 0 to 100'); return undefined; }
  }
  const serviceName = c.optionalString(t.serviceName, 'spec.tracing.serviceName');
  if (endpoint === undefined || (t.serviceName !== undefined && serviceName === undefined)) return undefined;
  return { otlpEndpoint: endpoint, samplingPercent: percent, ...(serviceName === undefined ? {} : { serviceName }) };
}
