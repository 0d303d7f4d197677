import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../agent/config/parse';
import { defaultProxyConfig, PROXY_CONFIG_NAME } from '../../agent/config/proxy-config';
import { DEFAULT_HTTP_LIMITS } from '../../agent/http/limits';
import { DEFAULT_FAIRNESS, FAIRNESS_BOUNDS } from '../../agent/proxy/fairness';

/**
 * daemonset/crds.yaml's ProxyConfig schema and agent/config/proxy-config.ts agree, so they cannot
 * drift: a ProxyConfig setting every field the schema types passes both and each value takes effect
 * in the converted config; the schema's field tree is the conversion's (its output's keys, the
 * exported HTTP limits and fairness defaults); and at every leaf the values at and just past the
 * schema's bounds, of a wrong type or outside an enum are judged alike by both, the conversion's
 * error naming the field. The real API server runs the schema (and its CEL rules) in
 * test/integration/kube-manifests.test.ts.
 */

interface Rule { rule: string; message?: string; fieldPath?: string }
interface Schema {
  type?: string; format?: string; properties?: Record<string, Schema>; items?: Schema; additionalProperties?: Schema | boolean; required?: string[];
  enum?: unknown[]; minimum?: number; maximum?: number; minLength?: number; maxLength?: number; pattern?: string;
  'x-kubernetes-validations'?: Rule[]; 'x-kubernetes-preserve-unknown-fields'?: boolean;
}
interface Crd {
  metadata: { name: string };
  spec: { group: string; scope: string; names: { kind: string; plural: string }; versions: { name: string; schema: { openAPIV3Schema: Schema }; subresources?: { status?: object } }[] };
}

const ROOT = join(__dirname, '..', '..', '..');
const docs = (file: string): Record<string, unknown>[] =>
  parseAllDocuments(readFileSync(join(ROOT, 'daemonset', file), 'utf8')).map((d) => d.toJS() as Record<string, unknown>).filter((d) => d !== null);
const PC = docs('crds.yaml').find((d) => (d as unknown as Crd).metadata?.name === 'proxyconfigs.config.weft.dev') as unknown as Crd | undefined;
assert.ok(PC, 'daemonset/crds.yaml has proxyconfigs.config.weft.dev');
const ROOT_SCHEMA = PC.spec.versions[0]!.schema.openAPIV3Schema;
const SPEC = ROOT_SCHEMA.properties!.spec!;

/** Problems of `value` under `schema` (the OpenAPI v3 subset this CRD uses; no CEL), each with its path. */
function validate(schema: Schema, value: unknown, at: string): string[] {
  const type = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value === 'number' ? 'number' : value === null ? 'null' : typeof value;
  if (schema.type !== undefined && schema.type !== type && !(schema.type === 'number' && type === 'integer')) return [`${at}: ${type}, schema says ${schema.type}`];
  const out: string[] = [];
  if (schema.enum !== undefined && !schema.enum.includes(value)) out.push(`${at}: not in enum`);
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) out.push(`${at}: below minimum`);
  if (typeof value === 'number' && schema.maximum !== undefined && value > schema.maximum) out.push(`${at}: above maximum`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) out.push(`${at}: shorter than minLength`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push(`${at}: longer than maxLength`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) out.push(`${at}: does not match pattern`);
  }
  if (type === 'object') {
    const obj = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in obj)) out.push(`${at}.${key}: required`);
    for (const [key, v] of Object.entries(obj)) {
      const sub = schema.properties?.[key];
      if (sub !== undefined) out.push(...validate(sub, v, `${at}.${key}`));
      else out.push(`${at}.${key}: unknown field`);
    }
  }
  return out;
}

/** The schema's leaves (typed scalars) by path under spec, e.g. `http.maxHeaderBytes`. */
function leaves(schema: Schema, path: string[] = []): { path: string[]; schema: Schema }[] {
  if (schema.type !== 'object') return [{ path, schema }];
  return Object.entries(schema.properties ?? {}).flatMap(([k, s]) => leaves(s, [...path, k]));
}

/** The conversion's errors for a ProxyConfig with this spec (and name), as `field: message`. */
function convert(spec: unknown, name = PROXY_CONFIG_NAME): string[] {
  const result = parseConfig(JSON.stringify({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name }, spec }), 'pcfg.json');
  return result.ok ? [] : result.error.map((e) => `${e.field}: ${e.message}`);
}

function converted(spec: unknown): Record<string, unknown> {
  const result = parseConfig(JSON.stringify({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: PROXY_CONFIG_NAME }, spec }), 'pcfg.json');
  assert.ok(result.ok, `the conversion refused ${JSON.stringify(spec)}: ${result.ok ? '' : JSON.stringify(result.error)}`);
  assert.ok(result.value.proxyConfig, 'the ProxyConfig is in the snapshot');
  return result.value.proxyConfig as unknown as Record<string, unknown>;
}

/** Sets every field the schema types, each to a value other than its default. */
const EVERY_FIELD = {
  protocolDetectionTimeoutMs: 350,
  http: {
    ...Object.fromEntries(Object.entries(DEFAULT_HTTP_LIMITS).map(([k, v]) => [k, (v as number) + 7])),
    requestTimeoutMs: 120_000,
    maxRequestBodyBytes: 10 * 1024 * 1024,
  },
  tracing: { otlpEndpoint: 'http://otel-collector.observability:4318/v1/traces', samplingPercent: 12.5, serviceName: 'mesh' },
  accessLog: { enabled: false, level: 'errors', samplingPercent: 25 },
  telemetry: { metrics: false },
  sameNodeSplice: false,
  pathNormalization: { normalization: 'MERGE_SLASHES' },
  fairness: Object.fromEntries(Object.entries(DEFAULT_FAIRNESS).map(([k, v]) => [k, v + 1])),
};

/** A spec with `value` at `path`, inside the smallest parent both judge valid (tracing needs its endpoint). */
function specWith(path: string[], value: unknown): Record<string, unknown> {
  const spec: Record<string, unknown> = {};
  let at = spec;
  for (const [i, key] of path.entries()) {
    if (i === path.length - 1) at[key] = value;
    else {
      at[key] = key === 'tracing' && path[i + 1] !== 'otlpEndpoint' ? { otlpEndpoint: 'http://collector:4318' } : {};
      at = at[key] as Record<string, unknown>;
    }
  }
  return spec;
}

/** Values at and past a leaf's bounds, of the wrong type, outside its enum. */
function probes(leaf: Schema): unknown[] {
  switch (leaf.type) {
    case 'integer': {
      assert.ok(leaf.minimum !== undefined && leaf.maximum !== undefined, 'every integer is bounded');
      return [leaf.minimum, leaf.maximum, leaf.minimum - 1, leaf.maximum + 1, leaf.minimum + 0.5, String(leaf.minimum), true, null];
    }
    case 'number': {
      assert.ok(leaf.minimum !== undefined && leaf.maximum !== undefined, 'every number is bounded');
      return [leaf.minimum, leaf.maximum, (leaf.minimum + leaf.maximum) / 3, leaf.minimum - 0.01, leaf.maximum + 0.01, '50', false];
    }
    case 'boolean':
      return [true, false, 'true', 1, 'yes'];
    case 'string':
      if (leaf.enum !== undefined) return [...leaf.enum, 'bogus', String(leaf.enum[0]).toUpperCase(), 1];
      if (leaf.pattern !== undefined) return ['http://collector:4318', 'https://otel.example.com/v1/traces', 'http://10.0.0.7:4318/v1/traces?x=1', 'ftp://collector', 'collector:4318', '', 4318];
      return ['mesh', 'reviews.shop', '', 7];
    default:
      return assert.fail(`leaf of type ${String(leaf.type)} has no probes`);
  }
}

describe('ProxyConfig CRD (daemonset/crds.yaml) and proxy-config.ts', () => {
  it('is cluster-scoped, served as config.weft.dev/v1 ProxyConfig, with a status subresource, and only the name the conversion accepts', () => {
    assert.equal(PC.spec.group, 'config.weft.dev');
    assert.equal(PC.spec.names.kind, 'ProxyConfig');
    assert.equal(PC.spec.scope, 'Cluster');
    assert.deepEqual(PC.spec.versions.map((v) => v.name), ['v1']);
    assert.ok(PC.spec.versions[0]!.subresources?.status !== undefined);
    const rules = ROOT_SCHEMA['x-kubernetes-validations'] ?? [];
    assert.deepEqual(rules.map((r) => r.rule), [`self.metadata.name == "${PROXY_CONFIG_NAME}"`]);
    assert.match(rules[0]!.message!, /metadata\.name/);
    assert.deepEqual(convert({}), []);
    assert.ok(convert({}, 'mesh').some((e) => e.startsWith('metadata.name')), 'the conversion refuses another name too');
  });

  it('is structural and keeps no unknown field: every object lists its properties, none preserves unknown fields', () => {
    const walk = (s: Schema, at: string): string[] => [
      ...(s['x-kubernetes-preserve-unknown-fields'] === true ? [`${at} preserves unknown fields`] : []),
      ...(s.additionalProperties !== undefined ? [`${at} has additionalProperties`] : []),
      ...(s.type === undefined ? [`${at} has no type`] : []),
      ...(s.type === 'object' && s.properties === undefined ? [`${at} is an object without properties`] : []),
      ...Object.entries(s.properties ?? {}).flatMap(([k, v]) => walk(v, `${at}.${k}`)),
    ];
    assert.deepEqual(walk(SPEC, 'spec'), []);
  });

  it('a ProxyConfig setting every typed field passes both, and each value is in the converted config', () => {
    assert.deepEqual(validate(SPEC, EVERY_FIELD, 'spec'), []);
    // Every leaf of the schema is set by EVERY_FIELD.
    const get = (o: unknown, path: string[]): unknown => path.reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
    for (const leaf of leaves(SPEC)) assert.notEqual(get(EVERY_FIELD, leaf.path), undefined, `EVERY_FIELD sets spec.${leaf.path.join('.')}`);
    const info = converted(EVERY_FIELD);
    for (const leaf of leaves(SPEC)) assert.deepEqual(get(info, leaf.path), get(EVERY_FIELD, leaf.path), `spec.${leaf.path.join('.')} takes effect`);
  });

  it('the schema\'s field tree is the conversion\'s: its output, the HTTP limits and the fairness settings have exactly the typed fields', () => {
    const info = converted(EVERY_FIELD);
    const props = (s: Schema): string[] => Object.keys(s.properties ?? {}).sort();
    assert.deepEqual(Object.keys(info).sort(), props(SPEC));
    for (const key of Object.keys(defaultProxyConfig())) assert.ok(SPEC.properties![key], `spec.${key} (a default) is typed`);
    for (const [key, value] of Object.entries(info)) {
      if (typeof value === 'object' && value !== null) assert.deepEqual(Object.keys(value).sort(), props(SPEC.properties![key]!), `spec.${key}`);
    }
    assert.deepEqual(props(SPEC.properties!.http!), [...Object.keys(DEFAULT_HTTP_LIMITS), 'maxRequestBodyBytes'].sort());
    assert.deepEqual(props(SPEC.properties!.fairness!), Object.keys(DEFAULT_FAIRNESS).sort());
    for (const [key, [min, max]] of Object.entries(FAIRNESS_BOUNDS)) {
      const s = SPEC.properties!.fairness!.properties![key]!;
      assert.deepEqual([s.type, s.minimum, s.maximum], ['integer', min, max], `spec.fairness.${key}: FAIRNESS_BOUNDS`);
    }
  });

  it('at every field, values at and past its bounds, of a wrong type or outside its enum are judged alike, the conversion naming the field', () => {
    let probed = 0;
    for (const leaf of leaves(SPEC)) {
      const field = `spec.${leaf.path.join('.')}`;
      for (const value of probes(leaf.schema)) {
        const spec = specWith(leaf.path, value);
        const schemaErrors = validate(SPEC, spec, 'spec');
        const errors = convert(spec);
        assert.equal(errors.length === 0, schemaErrors.length === 0,
          `${field} = ${JSON.stringify(value)}: the schema says ${JSON.stringify(schemaErrors)}, the conversion ${JSON.stringify(errors)}`);
        if (errors.length > 0) assert.ok(errors.some((e) => e.includes(leaf.path.at(-1)!)), `${field} = ${JSON.stringify(value)}: the conversion's error names the field: ${JSON.stringify(errors)}`);
        probed++;
      }
    }
    assert.ok(probed > 150, `${probed} probes`);
  });

  it('every enum is the conversion\'s list of accepted values (as its error for an unknown value lists them)', () => {
    const enums = leaves(SPEC).filter((l) => l.schema.enum !== undefined);
    assert.ok(enums.length >= 1);
    for (const leaf of enums) {
      const errors = convert(specWith(leaf.path, 'bogus'));
      const listed = /must be one of (.+), got "bogus"/.exec(errors.join('\n'));
      assert.ok(listed, `spec.${leaf.path.join('.')}: the conversion lists its values: ${JSON.stringify(errors)}`);
      assert.deepEqual([...leaf.schema.enum!].sort(), listed[1]!.split(', ').sort(), `spec.${leaf.path.join('.')}`);
    }
  });

  it('an unknown field at any level is refused by both, the conversion naming it', () => {
    for (const path of [['surprise'], ['http', 'maxHeaderKb'], ['tracing', 'sampling'], ['accessLog', 'levle'], ['telemetry', 'traces'], ['fairness', 'maxConnections'], ['pathNormalization', 'mode']]) {
      const spec = specWith(path, 1);
      assert.notDeepEqual(validate(SPEC, spec, 'spec'), [], path.join('.'));
      assert.ok(convert(spec).some((e) => e.includes(path.at(-1)!)), `${path.join('.')}: ${JSON.stringify(convert(spec))}`);
    }
  });

  it('the http rule (headersTimeoutMs within a non-zero requestTimeoutMs) uses the default headersTimeoutMs and matches checkLimits', () => {
    const rules = SPEC.properties!.http!['x-kubernetes-validations'] ?? [];
    assert.equal(rules.length, 1);
    const rule = rules[0]!;
    assert.equal(rule.fieldPath, '.headersTimeoutMs');
    assert.ok(rule.rule.includes(`: ${DEFAULT_HTTP_LIMITS.headersTimeoutMs})`), `the rule's default is DEFAULT_HTTP_LIMITS.headersTimeoutMs: ${rule.rule}`);
    assert.ok(rule.message!.includes(String(DEFAULT_HTTP_LIMITS.headersTimeoutMs)));
    // What the rule refuses, the conversion refuses; what it lets through, the conversion accepts.
    const half = DEFAULT_HTTP_LIMITS.headersTimeoutMs / 2;
    assert.ok(convert({ http: { requestTimeoutMs: half } }).some((e) => e.includes('headersTimeoutMs')));
    assert.ok(convert({ http: { requestTimeoutMs: half, headersTimeoutMs: half + 1 } }).some((e) => e.includes('headersTimeoutMs')));
    assert.deepEqual(convert({ http: { requestTimeoutMs: half, headersTimeoutMs: half } }), []);
    assert.deepEqual(convert({ http: { requestTimeoutMs: DEFAULT_HTTP_LIMITS.headersTimeoutMs } }), []);
    assert.deepEqual(convert({ http: { requestTimeoutMs: 0, headersTimeoutMs: 5 * DEFAULT_HTTP_LIMITS.headersTimeoutMs } }), []);
  });

  it('the control plane\'s ClusterRole may get, list and watch proxyconfigs (daemonset/rbac.yaml)', () => {
    const roles = docs('rbac.yaml').filter((d) => d.kind === 'ClusterRole' && (d.metadata as { name: string }).name === 'weft-controlplane');
    assert.equal(roles.length, 1);
    const rules = (roles[0]!.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]).filter((r) => r.apiGroups.includes('config.weft.dev') && r.resources.includes('proxyconfigs'));
    assert.deepEqual(rules.flatMap((r) => r.verbs).sort(), ['get', 'list', 'watch']);
  });
});
