import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../agent/config/parse';

/**
 * daemonset/crds.yaml's TrafficPolicy schema and agent/traffic/convert.ts agree: a policy using
 * every field passes both, and every field the schema types is one that policy sets (so a field
 * added to one side and not the other fails here).
 */

type Schema = { type?: string; properties?: Record<string, Schema>; items?: Schema; required?: string[]; enum?: unknown[]; minimum?: number; maximum?: number; minItems?: number; pattern?: string };

const ROOT = join(__dirname, '..', '..', '..');
const crd = parseAllDocuments(readFileSync(join(ROOT, 'daemonset', 'crds.yaml'), 'utf8'))
  .map((d) => d.toJS() as { metadata: { name: string }; spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } })
  .find((d) => d?.metadata?.name === 'trafficpolicies.networking.weft.dev');

const EVERY_FIELD = `
targetRefs: [{ group: "", kind: Service, name: reviews }]
loadBalancer: { simple: ROUND_ROBIN }
connectionPool:
  tcp: { maxConnections: 100, connectTimeout: 250ms }
  http: { http1MaxPendingRequests: 10, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 1h30m }
outlierDetection: { consecutive5xxErrors: 7, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4, interval: 1.5s, baseEjectionTime: 2m, maxEjectionTime: 10m, maxEjectionPercent: 50, minHealthPercent: 25 }
fault:
  delay: { percentage: { value: 10 }, fixedDelay: 2s }
  abort: { percentage: { value: 5.5 }, httpStatus: 503, grpcStatus: UNAVAILABLE }
timeout: 5s
retries: { attempts: 4, perTryTimeout: 1s, retryOn: "gateway-error,503", backoff: 50ms, retryBudget: { percent: 50, minRetryConcurrency: 1 } }
portLevelSettings:
  - port: { number: 9080 }
    loadBalancer: { simple: RANDOM }
    connectionPool: { tcp: { maxConnections: 1, connectTimeout: 1s }, http: { http1MaxPendingRequests: 1, http2MaxRequests: 1, maxRequestsPerConnection: 0, maxRetries: 0, idleTimeout: 1m } }
    outlierDetection: { consecutive5xxErrors: 1, consecutiveGatewayErrors: 1, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 1, interval: 1s, baseEjectionTime: 1s, maxEjectionTime: 1s, maxEjectionPercent: 100, minHealthPercent: 0 }
    fault: { delay: { percentage: { value: 1 }, fixedDelay: 1ms }, abort: { percentage: { value: 1 }, httpStatus: 500, grpcStatus: INTERNAL } }
    timeout: 1s
    retries: { attempts: 1, perTryTimeout: 1s, retryOn: 5xx, backoff: 1ms, retryBudget: { percent: 1, minRetryConcurrency: 1 } }
`;

/** Problems of `value` under `schema` (the subset of OpenAPI v3 the CRD uses), each with its path. */
function validate(schema: Schema, value: unknown, path: string, used: Set<string>): string[] {
  used.add(path);
  const out: string[] = [];
  const type = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value === 'number' ? 'number' : typeof value === 'object' ? 'object' : typeof value;
  if (schema.type !== undefined && schema.type !== type && !(schema.type === 'number' && type === 'integer')) return [`${path}: ${type}, schema says ${schema.type}`];
  if (schema.enum !== undefined && !schema.enum.includes(value)) out.push(`${path}: not in enum`);
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) out.push(`${path}: below minimum`);
  if (typeof value === 'number' && schema.maximum !== undefined && value > schema.maximum) out.push(`${path}: above maximum`);
  if (typeof value === 'string' && schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) out.push(`${path}: does not match pattern`);
  if (Array.isArray(value) && schema.items !== undefined) value.forEach((v) => out.push(...validate(schema.items!, v, `${path}[]`, used)));
  if (type === 'object') {
    const obj = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in obj)) out.push(`${path}.${key}: required by the schema`);
    for (const [key, v] of Object.entries(obj)) {
      const sub = schema.properties?.[key];
      if (sub === undefined) out.push(`${path}.${key}: not typed by the schema`);
      else out.push(...validate(sub, v, `${path}.${key}`, used));
    }
  }
  return out;
}

function typedPaths(schema: Schema, path: string, out: string[]): string[] {
  out.push(path);
  for (const [key, sub] of Object.entries(schema.properties ?? {})) typedPaths(sub, `${path}.${key}`, out);
  if (schema.items !== undefined) typedPaths(schema.items, `${path}[]`, out);
  return out;
}

it('the TrafficPolicy CRD schema types exactly the fields the conversion reads, with bounds the conversion accepts', () => {
  assert.ok(crd, 'daemonset/crds.yaml has trafficpolicies.networking.weft.dev');
  const specSchema = crd.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;
  const spec = parse(EVERY_FIELD) as unknown;
  const used = new Set<string>();
  assert.deepEqual(validate(specSchema, spec, 'spec', used), []);
  assert.deepEqual(typedPaths(specSchema, 'spec', []).filter((p) => !used.has(p)), [], 'typed by the schema but never set by the policy above');
  const yaml = `apiVersion: networking.weft.dev/v1\nkind: TrafficPolicy\nmetadata: { name: all, namespace: shop }\nspec:\n${EVERY_FIELD.replace(/^/gm, '  ')}`;
  const result = parseConfig(yaml.replace('grpcStatus: UNAVAILABLE', '').replace(', grpcStatus: INTERNAL', '').replace('httpStatus: 503, ', 'httpStatus: 503'), 'crd.yaml');
  assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.error));
});

it('the schema\'s bounds refuse what the conversion refuses', () => {
  const specSchema = crd!.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;
  const bad = parse(`
targetRefs: [{ kind: Deployment, name: x }]
connectionPool: { tcp: { maxConnections: 0, connectTimeout: "10" } }
outlierDetection: { maxEjectionPercent: 101 }
fault: { abort: { percentage: { value: -1 }, httpStatus: 600 } }
`);
  assert.deepEqual(validate(specSchema, bad, 'spec', new Set()), [
    'spec.targetRefs[].kind: not in enum',
    'spec.connectionPool.tcp.maxConnections: below minimum',
    'spec.connectionPool.tcp.connectTimeout: does not match pattern',
    'spec.outlierDetection.maxEjectionPercent: above maximum',
    'spec.fault.abort.percentage.value: below minimum',
    'spec.fault.abort.httpStatus: above maximum',
  ]);
});
