import { checkLimits, DEFAULT_HTTP_LIMITS, type HttpLimits } from '../http/limits';
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
 */
export interface ProxyConfigInfo {
  protocolDetectionTimeoutMs: number;
  http: HttpLimits;
  /** absent: tracing off (no spans, trace headers pass unchanged) */
  tracing?: TracingConfig;
}

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

const SPEC = new Set(['protocolDetectionTimeoutMs', 'http', 'tracing']);
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
  return config;
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
