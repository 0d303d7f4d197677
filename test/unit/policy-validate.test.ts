import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError, type ConfigError } from '../../agent/config/config-error';
import { parseConfig } from '../../agent/config/parse';
import { PolicySet } from '../../agent/policy';

/** AuthorizationPolicy through the config parser: every problem named by object and field, in one pass. */

const header = (name = 'p', namespace = 'shop'): string =>
  `apiVersion: security.weft.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: ${namespace} }\n`;

function errorsOf(spec: string): ConfigError[] {
  const result = parseConfig(`${header()}spec:\n${spec}`, 'test.yaml');
  assert.equal(result.ok, false, 'expected the policy to be rejected');
  return result.ok ? [] : result.error;
}

/** Exactly these problems, each on object `AuthorizationPolicy shop/p` at `field`, its message matching. */
function rejects(spec: string, expected: [field: string, message: RegExp][]): void {
  const errors = errorsOf(spec);
  const shown = errors.map(formatConfigError).join('\n');
  assert.deepEqual(errors.map((e) => [e.object, e.field]), expected.map(([field]) => ['AuthorizationPolicy shop/p', field]), shown);
  expected.forEach(([, message], i) => assert.match(errors[i]!.message, message, shown));
}

describe('AuthorizationPolicy: rejected, by object and field', () => {
  const table: [name: string, spec: string, expected: [string, RegExp][]][] = [
    ['action CUSTOM', '  action: CUSTOM\n  rules: [{}]', [['spec.action', /CUSTOM is not supported/]]],
    ['an unknown action', '  action: ALLOWED', [['spec.action', /must be one of ALLOW, DENY, AUDIT, CUSTOM/]]],
    ['provider', '  action: ALLOW\n  provider: { name: ext-authz }\n  rules: [{}]', [['spec.provider', /not supported/]]],
    ['targetRefs', '  targetRefs: [{ kind: Service, group: "", name: web }]\n  rules: [{}]', [['spec.targetRefs', /not supported yet; select the workloads with spec.selector.matchLabels/]]],
    ['targetRef', '  targetRef: { kind: Service, group: "", name: web }', [['spec.targetRef', /not supported yet/]]],
    ['requestPrincipals', '  rules: [{ from: [{ source: { requestPrincipals: ["*"] } }] }]', [['spec.rules[0].from[0].source.requestPrincipals', /no JWTs/]]],
    ['notRequestPrincipals', '  rules: [{ from: [{ source: { notRequestPrincipals: ["*"] } }] }]', [['spec.rules[0].from[0].source.notRequestPrincipals', /no JWTs/]]],
    ['a request.auth.* condition', '  rules: [{ when: [{ key: "request.auth.claims[iss]", values: [x] }] }]', [['spec.rules[0].when[0].key', /"request.auth.claims\[iss\]" is not supported: Weft validates no JWTs/]]],
    ['an experimental.* condition', '  rules: [{ when: [{ key: "experimental.envoy.filters.a[b]", values: [x] }] }]', [['spec.rules[0].when[0].key', /experimental keys/]]],
    ['an unknown condition key', '  rules: [{ when: [{ key: source.port, values: ["1"] }] }]', [['spec.rules[0].when[0].key', /unknown key "source.port"; Weft evaluates request.headers\[NAME\], source.ip/]]],
    ['a header condition without a name', '  rules: [{ when: [{ key: "request.headers[]", values: [x] }] }]', [['spec.rules[0].when[0].key', /header name/]]],
    ['a bad CIDR prefix length', '  rules: [{ from: [{ source: { ipBlocks: [10.0.0.0/33] } }] }]', [['spec.rules[0].from[0].source.ipBlocks[0]', /prefix length must be 0 to 32/]]],
    ['a bad IPv6 prefix length', '  rules: [{ from: [{ source: { notIpBlocks: ["fd00::/129"] } }] }]', [['spec.rules[0].from[0].source.notIpBlocks[0]', /0 to 128/]]],
    ['not an address', '  rules: [{ from: [{ source: { remoteIpBlocks: [10.0.0.300] } }] }]', [['spec.rules[0].from[0].source.remoteIpBlocks[0]', /not an IP address or CIDR/]]],
    ['a bad address in source.ip', '  rules: [{ when: [{ key: source.ip, values: [nope] }] }]', [['spec.rules[0].when[0].values[0]', /not an IP address or CIDR/]]],
    ['a port that is not a number', '  rules: [{ to: [{ operation: { ports: [http] } }] }]', [['spec.rules[0].to[0].operation.ports[0]', /"http" is not a port number/]]],
    ['a port out of range', '  rules: [{ to: [{ operation: { notPorts: ["70000"] } }] }]', [['spec.rules[0].to[0].operation.notPorts[0]', /not a port number \(1 to 65535\)/]]],
    ['an unquoted port (Istio ports are strings)', '  rules: [{ to: [{ operation: { ports: [8080] } }] }]', [['spec.rules[0].to[0].operation.ports[0]', /must be a string such as "8080"/]]],
    ['a bad destination.port value', '  rules: [{ when: [{ key: destination.port, notValues: ["0"] }] }]', [['spec.rules[0].when[0].notValues[0]', /not a port number/]]],
    ['a near miss in the spec', '  rule: [{}]', [['spec.rule', /unknown field; did you mean "rules"\?/]]],
    ['a near miss in a source', '  rules: [{ from: [{ source: { notPrincipal: [x] } }] }]', [['spec.rules[0].from[0].source.notPrincipal', /did you mean "notPrincipals"\?/]]],
    ['a near miss in an operation', '  rules: [{ to: [{ operation: { method: [GET] } }] }]', [['spec.rules[0].to[0].operation.method', /did you mean "methods"\?/]]],
    ['a near miss in a rule', '  rules: [{ wen: [] }]', [['spec.rules[0].wen', /did you mean "when"\?/]]],
    ['a condition without values', '  rules: [{ when: [{ key: source.namespace }] }]', [['spec.rules[0].when[0]', /needs values or notValues for key source.namespace/]]],
    ['a condition with empty values', '  rules: [{ when: [{ key: source.namespace, values: [] }] }]', [['spec.rules[0].when[0]', /needs values or notValues/]]],
    ['a condition without a key', '  rules: [{ when: [{ values: [x] }] }]', [['spec.rules[0].when[0].key', /must be a non-empty string/]]],
    ['methods as a string, not a list', '  rules: [{ to: [{ operation: { methods: GET } }] }]', [['spec.rules[0].to[0].operation.methods', /must be a list/]]],
    ['rules as a mapping', '  rules: { from: [] }', [['spec.rules', /must be a list/]]],
    ['an empty string value', '  rules: [{ from: [{ source: { principals: [""] } }] }]', [['spec.rules[0].from[0].source.principals[0]', /non-empty string/]]],
    ['a number in matchLabels', '  selector: { matchLabels: { version: 2 } }', [['spec.selector.matchLabels.version', /must be a string/]]],
    ['an empty from list', '  rules: [{ from: [] }]', [['spec.rules[0].from', /must not be empty/]]],
    ['a from entry without source', '  rules: [{ from: [{}] }]', [['spec.rules[0].from[0].source', /is required/]]],
    ['an empty source', '  rules: [{ from: [{ source: {} }] }]', [['spec.rules[0].from[0].source', /must not be empty/]]],
    ['an empty operation', '  rules: [{ to: [{ operation: {} }] }]', [['spec.rules[0].to[0].operation', /must not be empty/]]],
    ['serviceAccounts', '  rules: [{ from: [{ source: { serviceAccounts: [web] } }] }]', [['spec.rules[0].from[0].source.serviceAccounts', /not supported yet; write principals/]]],
    ['a DENY policy without rules (as Istio\'s webhook)', '  action: DENY', [['spec.rules', /add an empty rule `\{\}`/]]],
    ['a wildcard inside a value', '  rules: [{ to: [{ operation: { paths: ["/a*b"] } }] }]', [['spec.rules[0].to[0].operation.paths[0]', /"\*" may only be the whole value or its first or last character/]]],
    ['wildcards at both ends', '  rules: [{ from: [{ source: { namespaces: ["*dev*"] } }] }]', [['spec.rules[0].from[0].source.namespaces[0]', /may only be/]]],
    ['a path template', '  rules: [{ to: [{ operation: { paths: ["/a/{*}/b"] } }] }]', [['spec.rules[0].to[0].operation.paths[0]', /path templates/]]],
  ];
  for (const [name, spec, expected] of table) it(name, () => rejects(spec, expected));

  it('reports every problem of one policy in one pass', () => {
    const errors = errorsOf('  action: CUSTOM\n  rules: [{ from: [{ source: { ipBlocks: [bad] } }], to: [{ operation: { ports: [x] } }] }]');
    assert.deepEqual(errors.map((e) => e.field), ['spec.action', 'spec.rules[0].from[0].source.ipBlocks[0]', 'spec.rules[0].to[0].operation.ports[0]']);
  });

  it('an invalid policy leaves nothing of the stream applied', () => {
    const result = parseConfig(`${header('good')}spec: {}\n---\n${header('bad')}spec: { action: CUSTOM }\n`, 'test.yaml');
    assert.equal(result.ok, false);
    if (!result.ok) assert.deepEqual(result.error.map((e) => e.object), ['AuthorizationPolicy shop/bad']);
  });
});

describe('AuthorizationPolicy: a valid policy round-trips into the snapshot', () => {
  const yaml = `${header('httpbin', 'foo')}spec:
  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
  - from:
    - source: { principals: ["cluster.local/ns/default/sa/sleep"], notNamespaces: [dev] }
    - source: { ipBlocks: ["10.1.0.0/16", "fd00:0:0::1"], notRemoteIpBlocks: ["10.1.2.3"] }
    to:
    - operation: { methods: [GET, HEAD], paths: ["/info*"], hosts: ["HttpBin.Foo*"], ports: ["8000"], notPaths: ["/info/secret"] }
    when:
    - { key: "request.headers[X-Version]", values: [v1, v2] }
    - { key: destination.port, notValues: ["9000"] }
    - { key: source.ip, values: ["::ffff:10.1.2.4"] }
  - {}
---
${header('deny-all', 'weft-system')}spec: { action: DENY, rules: [{}] }
---
${header('nothing', 'foo')}spec: {}
`;

  it('normalized: canonical IPs, ports as numbers, hosts and header names lower-cased, defaults filled', () => {
    const result = parseConfig(yaml, 'test.yaml');
    if (!result.ok) assert.fail(result.error.map(formatConfigError).join('\n'));
    assert.deepEqual(result.value.authorizationPolicies, [
      {
        namespace: 'foo', name: 'httpbin', matchLabels: { app: 'httpbin' }, action: 'ALLOW',
        rules: [
          {
            from: [
              { principals: ['cluster.local/ns/default/sa/sleep'], notNamespaces: ['dev'] },
              { ipBlocks: ['10.1.0.0/16', 'fd00::1'], notRemoteIpBlocks: ['10.1.2.3'] },
            ],
            to: [{ methods: ['GET', 'HEAD'], paths: ['/info*'], hosts: ['httpbin.foo*'], ports: [8000], notPaths: ['/info/secret'] }],
            when: [
              { key: 'request.headers', header: 'x-version', values: ['v1', 'v2'] },
              { key: 'destination.port', notValues: ['9000'] },
              { key: 'source.ip', values: ['10.1.2.4'] },
            ],
          },
          {},
        ],
      },
      { namespace: 'weft-system', name: 'deny-all', action: 'DENY', rules: [{}] },
      { namespace: 'foo', name: 'nothing', action: 'ALLOW', rules: [] },
    ]);
  });

  it('survives JSON (the discovery stream) and decides the same from the copy', () => {
    const result = parseConfig(yaml, 'test.yaml');
    if (!result.ok) assert.fail(result.error.map(formatConfigError).join('\n'));
    const copy = JSON.parse(JSON.stringify(result.value.authorizationPolicies));
    assert.deepEqual(copy, result.value.authorizationPolicies);
    const conn = { sourceIp: '10.1.9.9', sourcePort: 1, destinationIp: '10.0.0.2', destinationPort: 8000 };
    const w = { namespace: 'bar', labels: { app: 'httpbin' } };
    for (const set of [new PolicySet(result.value.authorizationPolicies), new PolicySet(copy)]) {
      const d = set.decide(w, conn);
      assert.deepEqual([d.allow, d.policy, d.rule], [false, 'weft-system/deny-all', 0]);
    }
  });
});
