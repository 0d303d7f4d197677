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
 */
export interface ProxyConfigInfo {
  protocolDetectionTimeoutMs: number;
  http: HttpLimits;
}

export const PROXY_CONFIG_NAME = 'default';
export const DEFAULT_PROTOCOL_DETECTION_MS = 200;

export function defaultProxyConfig(): ProxyConfigInfo {
  return { protocolDetectionTimeoutMs: DEFAULT_PROTOCOL_DETECTION_MS, http: { ...DEFAULT_HTTP_LIMITS } };
}

const SPEC = new Set(['protocolDetectionTimeoutMs', 'http']);
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
  return config;
}
