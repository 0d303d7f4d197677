import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../agent/config/parse';

/**
 * daemonset/crds.yaml's AuthorizationPolicy and PeerAuthentication schemas and the conversions
 * (agent/policy/convert.ts, agent/config/peer-authentication.ts) agree: a policy using every field
 * the conversion reads passes both, every field the schema types is set by that policy or refused
 * by one of the schema's rules, what the schema's types, enums, bounds and patterns refuse the
 * conversion refuses too, and each field the schema refuses by a rule is one the conversion
 * refuses with the same words. The rules themselves (CEL) are run by the real API server in
 * test/integration/kube-manifests.test.ts.
 */

interface Rule { rule: string; message?: string; messageExpression?: string; fieldPath?: string }
interface Schema {
  type?: string; properties?: Record<string, Schema>; items?: Schema; additionalProperties?: Schema; required?: string[];
  enum?: unknown[]; minimum?: number; maximum?: number; minItems?: number; maxItems?: number; minLength?: number; maxLength?: number;
  minProperties?: number; maxProperties?: number; pattern?: string; 'x-kubernetes-validations'?: Rule[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}
interface Crd { metadata: { name: string }; spec: { versions: { schema: { openAPIV3Schema: Schema }; subresources?: { status?: object }; additionalPrinterColumns?: { name: string; jsonPath: string }[] }[] } }

const ROOT = join(__dirname, '..', '..', '..');
const crds = parseAllDocuments(readFileSync(join(ROOT, 'daemonset', 'crds.yaml'), 'utf8')).map((d) => d.toJS() as Crd);
const crd = (name: string): Crd => {
  const found = crds.find((d) => d?.metadata?.name === name);
  assert.ok(found, `daemonset/crds.yaml has ${name}`);
  return found;
};
const AP = crd('authorizationpolicies.security.weft.dev');
const PA = crd('peerauthentications.security.weft.dev');
const specOf = (c: Crd): Schema => c.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;

/** Problems of `value` under `schema` (the subset of OpenAPI v3 these CRDs use), each with its path; `used` collects the schema paths visited. */
function validate(schema: Schema, value: unknown, path: string, used: Set<string>, at = path): string[] {
  used.add(path);
  const type = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value === 'number' ? 'number' : typeof value === 'object' ? 'object' : typeof value;
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
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${at}: fewer than minItems`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push(`${at}: more than maxItems`);
    if (schema.items !== undefined) value.forEach((v, i) => out.push(...validate(schema.items!, v, `${path}[]`, used, `${at}[${i}]`)));
  }
  if (type === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (schema.minProperties !== undefined && keys.length < schema.minProperties) out.push(`${at}: fewer than minProperties`);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) out.push(`${at}: more than maxProperties`);
    for (const key of schema.required ?? []) if (!(key in obj)) out.push(`${at}.${key}: required by the schema`);
    for (const [key, v] of Object.entries(obj)) {
      const sub = schema.properties?.[key];
      if (sub !== undefined) out.push(...validate(sub, v, `${path}.${key}`, used, `${at}.${key}`));
      else if (schema.additionalProperties !== undefined) out.push(...validate(schema.additionalProperties, v, `${path}{}`, used, `${at}[${key}]`));
      else out.push(`${at}.${key}: not typed by the schema`);
    }
  }
  return out;
}

/** Every path the schema types, and the fields its rules refuse outright (`!has(self.X)` with fieldPath `.X`). */
function typedPaths(schema: Schema, path: string, out: { paths: string[]; refused: Map<string, string> }): typeof out {
  out.paths.push(path);
  for (const r of schema['x-kubernetes-validations'] ?? []) {
    const m = /^!has\(self\.(\w+)\)$/.exec(r.rule);
    if (m !== null) {
      assert.equal(r.fieldPath, `.${m[1]}`, `${path}: the rule refusing ${m[1]} names it in fieldPath`);
      out.refused.set(`${path}.${m[1]}`, r.message!);
    }
  }
  for (const [key, sub] of Object.entries(schema.properties ?? {})) typedPaths(sub, `${path}.${key}`, out);
  if (schema.items !== undefined) typedPaths(schema.items, `${path}[]`, out);
  if (schema.additionalProperties !== undefined) typedPaths(schema.additionalProperties, `${path}{}`, out);
  return out;
}

function noPreservedUnknownFields(schema: Schema, path: string): string[] {
  const here = schema['x-kubernetes-preserve-unknown-fields'] === true ? [path] : [];
  return [
    ...here,
    ...Object.entries(schema.properties ?? {}).flatMap(([k, s]) => noPreservedUnknownFields(s, `${path}.${k}`)),
    ...(schema.items ? noPreservedUnknownFields(schema.items, `${path}[]`) : []),
    ...(schema.additionalProperties ? noPreservedUnknownFields(schema.additionalProperties, `${path}{}`) : []),
  ];
}

/** The conversion's errors for one object of `kind` with `spec`, as `field: message`. */
function convert(kind: 'AuthorizationPolicy' | 'PeerAuthentication', spec: unknown): string[] {
  const obj = { apiVersion: 'security.weft.dev/v1', kind, metadata: { name: 'p', namespace: 'shop' }, spec };
  const result = parseConfig(JSON.stringify(obj), 'crd.json');
  return result.ok ? [] : result.error.map((e) => `${e.field}: ${e.message}`);
}

/** An AuthorizationPolicy setting every field convert.ts reads and accepts. */
const EVERY_AP_FIELD = {
  selector: { matchLabels: { app: 'reviews', version: 'v1' } },
  action: 'ALLOW',
  rules: [{
    from: [
      { source: { principals: ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/*'], notPrincipals: ['*/sa/blocked'], namespaces: ['shop'], notNamespaces: ['test*'] } },
      { source: { ipBlocks: ['10.0.0.0/8', '192.168.1.7'], notIpBlocks: ['10.9.0.0/16'], remoteIpBlocks: ['fd00::/64'], notRemoteIpBlocks: ['fd00::1'] } },
    ],
    to: [{ operation: { hosts: ['reviews.shop.svc.cluster.local', '*.example.com'], notHosts: ['admin.*'], ports: ['9080', '65535'], notPorts: ['1'], methods: ['GET', 'HEAD'], notMethods: ['DELETE'], paths: ['/api/*', '/healthz'], notPaths: ['*/admin'] } }],
    when: [
      { key: 'request.headers[x-tenant]', values: ['blue'], notValues: ['red*'] },
      { key: 'source.ip', values: ['10.1.0.0/16'] },
      { key: 'remote.ip', notValues: ['10.2.0.1'] },
      { key: 'destination.ip', values: ['10.3.0.1'] },
      { key: 'source.namespace', values: ['shop'] },
      { key: 'source.principal', values: ['cluster.local/ns/shop/sa/web'] },
      { key: 'connection.sni', values: ['*.shop.svc.cluster.local'] },
      { key: 'destination.port', values: ['9080'] },
    ],
  }, {}],
};

const EVERY_PA_FIELD = {
  selector: { matchLabels: { app: 'reviews' } },
  mtls: { mode: 'STRICT' },
  portLevelMtls: { 9080: { mode: 'UNSET' } },
};

describe('AuthorizationPolicy schema and conversion', () => {
  it('a policy using every field the conversion reads passes both; every other typed field is refused by a schema rule', () => {
    const used = new Set<string>();
    assert.deepEqual(validate(specOf(AP), EVERY_AP_FIELD, 'spec', used), []);
    assert.deepEqual(convert('AuthorizationPolicy', EVERY_AP_FIELD), []);
    const { paths, refused } = typedPaths(specOf(AP), 'spec', { paths: [], refused: new Map() });
    const unused = paths.filter((p) => !used.has(p) && ![...refused.keys()].some((r) => p === r || p.startsWith(`${r}.`) || p.startsWith(`${r}[]`)));
    assert.deepEqual(unused, [], 'typed by the schema, but neither set by the policy above nor refused by a rule');
    assert.deepEqual([...refused.keys()].sort(), [
      'spec.provider', 'spec.rules[].from[].source.notRequestPrincipals', 'spec.rules[].from[].source.notServiceAccounts',
      'spec.rules[].from[].source.requestPrincipals', 'spec.rules[].from[].source.serviceAccounts', 'spec.targetRef', 'spec.targetRefs',
    ]);
  });

  it('each field the schema refuses by a rule is one the conversion refuses, in the same words, naming the same field', () => {
    const { refused } = typedPaths(specOf(AP), 'spec', { paths: [], refused: new Map() });
    const sample: Record<string, unknown> = {
      'spec.provider': { name: 'ext-authz' },
      'spec.targetRef': { kind: 'Service', group: '', name: 'reviews' },
      'spec.targetRefs': [{ kind: 'Service', group: '', name: 'reviews' }],
    };
    for (const [path, message] of refused) {
      const spec: Record<string, unknown> = { rules: [{}] };
      let field = path;
      if (path.startsWith('spec.rules[].from[].source.')) {
        const key = path.split('.').pop()!;
        spec.rules = [{ from: [{ source: { [key]: ['cluster.local/ns/shop/sa/web'] } }] }];
        field = `spec.rules[0].from[0].source.${key}`;
      } else {
        spec[path.slice('spec.'.length)] = sample[path];
      }
      // The schema types the field (so it is not pruned before a rule can refuse it).
      assert.deepEqual(validate(specOf(AP), spec, 'spec', new Set()), [], path);
      assert.deepEqual(convert('AuthorizationPolicy', spec), [`${field}: ${message}`], path);
    }
  });

  it('action: ALLOW, DENY and AUDIT pass both; CUSTOM is typed and refused by a rule with the conversion\'s message', () => {
    const action = specOf(AP).properties!.action!;
    assert.deepEqual(action.enum, ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']);
    for (const a of ['ALLOW', 'DENY', 'AUDIT']) assert.deepEqual(convert('AuthorizationPolicy', { action: a, rules: [{}] }), [], a);
    const rules = action['x-kubernetes-validations'] ?? [];
    assert.deepEqual(rules.map((r) => r.rule), ['self != "CUSTOM"']);
    assert.deepEqual(convert('AuthorizationPolicy', { action: 'CUSTOM', rules: [{}] }), [`spec.action: ${rules[0]!.message}`]);
    assert.deepEqual(validate(action, 'LOG', 'spec.action', new Set()), ['spec.action: not in enum']);
    assert.ok(convert('AuthorizationPolicy', { action: 'LOG' }).some((e) => e.startsWith('spec.action: must be one of')));
  });

  it('the spec-wide rule on DENY without rules says what the conversion says', () => {
    const rule = specOf(AP)['x-kubernetes-validations']!.find((r) => r.fieldPath === '.rules');
    assert.ok(rule);
    assert.deepEqual(convert('AuthorizationPolicy', { action: 'DENY' }), [`spec.rules: ${rule.message}`]);
  });

  // Each of these is refused by the schema's types, enums, bounds, required fields or patterns, and by the conversion, at the same field.
  const MALFORMED: { name: string; spec: unknown; schema: string; conversion: string }[] = [
    { name: 'rules not a list', spec: { rules: { from: [] } }, schema: 'spec.rules: object, schema says array', conversion: 'spec.rules' },
    { name: 'empty from', spec: { rules: [{ from: [] }] }, schema: 'spec.rules[0].from: fewer than minItems', conversion: 'spec.rules[0].from' },
    { name: 'from without source', spec: { rules: [{ from: [{}] }] }, schema: 'spec.rules[0].from[0].source: required by the schema', conversion: 'spec.rules[0].from[0].source' },
    { name: 'empty source', spec: { rules: [{ from: [{ source: {} }] }] }, schema: 'spec.rules[0].from[0].source: fewer than minProperties', conversion: 'spec.rules[0].from[0].source' },
    { name: 'empty operation', spec: { rules: [{ to: [{ operation: {} }] }] }, schema: 'spec.rules[0].to[0].operation: fewer than minProperties', conversion: 'spec.rules[0].to[0].operation' },
    { name: 'principal not a list', spec: { rules: [{ from: [{ source: { principals: 'cluster.local/ns/a/sa/b' } }] }] }, schema: 'spec.rules[0].from[0].source.principals: string, schema says array', conversion: 'spec.rules[0].from[0].source.principals' },
    { name: 'star inside', spec: { rules: [{ from: [{ source: { namespaces: ['a*b'] } }] }] }, schema: 'spec.rules[0].from[0].source.namespaces[0]: does not match pattern', conversion: 'spec.rules[0].from[0].source.namespaces[0]' },
    { name: 'star both ends', spec: { rules: [{ to: [{ operation: { hosts: ['*.example.*'] } }] }] }, schema: 'spec.rules[0].to[0].operation.hosts[0]: does not match pattern', conversion: 'spec.rules[0].to[0].operation.hosts[0]' },
    { name: 'empty string', spec: { rules: [{ to: [{ operation: { methods: [''] } }] }] }, schema: 'spec.rules[0].to[0].operation.methods[0]: does not match pattern', conversion: 'spec.rules[0].to[0].operation.methods[0]' },
    { name: 'port as number', spec: { rules: [{ to: [{ operation: { ports: [8080] } }] }] }, schema: 'spec.rules[0].to[0].operation.ports[0]: integer, schema says string', conversion: 'spec.rules[0].to[0].operation.ports[0]' },
    { name: 'port 0', spec: { rules: [{ to: [{ operation: { ports: ['0'] } }] }] }, schema: 'spec.rules[0].to[0].operation.ports[0]: does not match pattern', conversion: 'spec.rules[0].to[0].operation.ports[0]' },
    { name: 'port 65536', spec: { rules: [{ to: [{ operation: { notPorts: ['65536'] } }] }] }, schema: 'spec.rules[0].to[0].operation.notPorts[0]: does not match pattern', conversion: 'spec.rules[0].to[0].operation.notPorts[0]' },
    { name: 'port name', spec: { rules: [{ to: [{ operation: { ports: ['http'] } }] }] }, schema: 'spec.rules[0].to[0].operation.ports[0]: does not match pattern', conversion: 'spec.rules[0].to[0].operation.ports[0]' },
    { name: 'ip block with a zone', spec: { rules: [{ from: [{ source: { ipBlocks: ['fe80::1%eth0'] } }] }] }, schema: 'spec.rules[0].from[0].source.ipBlocks[0]: does not match pattern', conversion: 'spec.rules[0].from[0].source.ipBlocks[0]' },
    { name: 'ip block a name', spec: { rules: [{ from: [{ source: { notIpBlocks: ['gateway'] } }] }] }, schema: 'spec.rules[0].from[0].source.notIpBlocks[0]: does not match pattern', conversion: 'spec.rules[0].from[0].source.notIpBlocks[0]' },
    { name: 'condition without key', spec: { rules: [{ when: [{ values: ['a'] }] }] }, schema: 'spec.rules[0].when[0].key: required by the schema', conversion: 'spec.rules[0].when[0].key' },
    { name: 'empty value', spec: { rules: [{ when: [{ key: 'source.namespace', values: [''] }] }] }, schema: 'spec.rules[0].when[0].values[0]: shorter than minLength', conversion: 'spec.rules[0].when[0].values[0]' },
    { name: 'label value a number', spec: { selector: { matchLabels: { tier: 1 } } }, schema: 'spec.selector.matchLabels[tier]: integer, schema says string', conversion: 'spec.selector.matchLabels.tier' },
    { name: 'typo in a rule', spec: { rules: [{ too: [{ operation: { methods: ['GET'] } }] }] }, schema: 'spec.rules[0].too: not typed by the schema', conversion: 'spec.rules[0].too' },
    { name: 'typo in the spec', spec: { action: 'DENY', rule: [{}] }, schema: 'spec.rule: not typed by the schema', conversion: 'spec.rule' },
  ];
  for (const bad of MALFORMED) {
    it(`refused by both: ${bad.name}`, () => {
      assert.ok(validate(specOf(AP), bad.spec, 'spec', new Set()).includes(bad.schema), JSON.stringify(validate(specOf(AP), bad.spec, 'spec', new Set())));
      const errors = convert('AuthorizationPolicy', bad.spec);
      assert.ok(errors.some((e) => e.startsWith(`${bad.conversion}:`)), `the conversion does not refuse ${bad.conversion}: ${JSON.stringify(errors)}`);
    });
  }

  it('the when keys the schema\'s rule lists are the ones the conversion evaluates', () => {
    const key = specOf(AP).properties!.rules!.items!.properties!.when!.items!.properties!.key!;
    const rule = key['x-kubernetes-validations']![0]!.rule;
    const listed = [...(/\[([^\]]*)\]/.exec(rule)![1]!.matchAll(/"([^"]+)"/g))].map((m) => m[1]!);
    const evaluated = EVERY_AP_FIELD.rules[0]!.when!.map((w) => w.key).filter((k) => !k.startsWith('request.headers'));
    assert.deepEqual([...listed].sort(), [...evaluated].sort());
    for (const k of ['request.auth.claims[iss]', 'experimental.envoy.filters.x', 'request.headers', 'source.user']) {
      assert.ok(convert('AuthorizationPolicy', { rules: [{ when: [{ key: k, values: ['a'] }] }] }).some((e) => e.startsWith('spec.rules[0].when[0].key:')), k);
    }
  });
});

describe('PeerAuthentication schema and conversion', () => {
  it('a policy using every field the conversion reads passes both, and the schema types nothing else', () => {
    const used = new Set<string>();
    assert.deepEqual(validate(specOf(PA), EVERY_PA_FIELD, 'spec', used), []);
    assert.deepEqual(convert('PeerAuthentication', EVERY_PA_FIELD), []);
    const { paths } = typedPaths(specOf(PA), 'spec', { paths: [], refused: new Map() });
    assert.deepEqual(paths.filter((p) => !used.has(p)), []);
  });

  it('the modes the schema allows are the ones the conversion reads; others are refused by both', () => {
    const modes = specOf(PA).properties!.mtls!.properties!.mode!.enum!;
    assert.deepEqual(modes, ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']);
    assert.deepEqual(specOf(PA).properties!.portLevelMtls!.additionalProperties!.properties!.mode!.enum, modes);
    for (const mode of modes) assert.deepEqual(convert('PeerAuthentication', { mtls: { mode } }), [], String(mode));
    assert.deepEqual(validate(specOf(PA), { mtls: { mode: 'strict' } }, 'spec', new Set()), ['spec.mtls.mode: not in enum']);
    assert.ok(convert('PeerAuthentication', { mtls: { mode: 'strict' } }).some((e) => e.startsWith('spec.mtls.mode:')));
    assert.deepEqual(validate(specOf(PA), { mtls: { mod: 'STRICT' } }, 'spec', new Set()), ['spec.mtls.mod: not typed by the schema']);
    assert.ok(convert('PeerAuthentication', { mtls: { mod: 'STRICT' } }).some((e) => e.startsWith('spec.mtls.mod:')));
  });

  it('the port-level rules say what the conversion says', () => {
    const portLevel = specOf(PA).properties!.portLevelMtls!;
    const modeRule = portLevel.additionalProperties!['x-kubernetes-validations']![0]!;
    assert.equal(modeRule.fieldPath, '.mode');
    const errors = convert('PeerAuthentication', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 8080: { mode: 'DISABLE' } } });
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^spec\.portLevelMtls\[8080\]\.mode: DISABLE for port 8080 is not enforced by Weft: /);
    assert.ok(errors[0]!.endsWith(modeRule.message!.replace(/^is not enforced by Weft: /, '')), `${errors[0]} vs ${modeRule.message}`);
    const selectorRule = specOf(PA)['x-kubernetes-validations']!.find((r) => r.fieldPath === '.portLevelMtls')!;
    assert.deepEqual(convert('PeerAuthentication', { portLevelMtls: { 8080: {} } }), [`spec.portLevelMtls: ${selectorRule.message}`]);
  });
});

describe('both kinds', () => {
  for (const [kind, c, column, path] of [['AuthorizationPolicy', AP, 'Action', '.spec.action'], ['PeerAuthentication', PA, 'Mode', '.spec.mtls.mode']] as const) {
    it(`${kind}: no unknown field is preserved, a status subresource with typed conditions, printer columns ${column}, Accepted and Age`, () => {
      const version = c.spec.versions[0]!;
      assert.deepEqual(noPreservedUnknownFields(version.schema.openAPIV3Schema, ''), []);
      assert.ok(version.subresources?.status);
      const conditions = version.schema.openAPIV3Schema.properties!.status!.properties!.conditions!;
      assert.deepEqual(conditions.items!.required, ['type', 'status', 'reason', 'message', 'lastTransitionTime']);
      assert.deepEqual(Object.keys(conditions.items!.properties!).sort(), ['lastTransitionTime', 'message', 'observedGeneration', 'reason', 'status', 'type']);
      assert.deepEqual(version.additionalPrinterColumns!.map((col) => [col.name, col.jsonPath]),
        [[column, path], ['Accepted', '.status.conditions[?(@.type=="Accepted")].status'], ['Age', '.metadata.creationTimestamp']]);
    });
  }
});
