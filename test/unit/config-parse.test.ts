import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError, type ConfigError } from '../../agent/config/config-error';
import type { Snapshot } from '../../agent/config/objects';
import { parseConfig } from '../../agent/config/parse';

const VALID = `
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: { weft.dev/mesh: enabled }
---
apiVersion: v1
kind: Node
metadata: { name: node-a }
status:
  addresses:
    - { type: Hostname, address: node-a }
    - { type: InternalIP, address: 192.168.50.2 }
    - { type: InternalIP, address: "fd00:50:0::2" }
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d4b9c-x2x4q
  namespace: shop
  labels: { app: web }
  annotations: { weft.dev/cgroup: /sys/fs/cgroup/weft/web/ }
spec:
  nodeName: node-a
  serviceAccountName: web
  restartPolicy: Always
  containers: [{ name: web, image: nginx }]
status:
  phase: Running
  podIP: 10.0.1.5
  podIPs: [{ ip: 10.0.1.5 }, { ip: "FD00:1:0::5" }]
---
apiVersion: v1
kind: Pod
metadata: { name: db }
spec: { nodeName: node-b }
status: { podIP: 10.0.2.7 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  type: ClusterIP
  selector: { app: web }
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::a"]
  ports:
    - { name: http, port: 80, targetPort: 8080, appProtocol: http }
    - { name: grpc, port: 9090, targetPort: grpc, protocol: TCP }
---
apiVersion: security.weft.dev/v1
kind: PeerAuthentication
metadata: { name: strict-web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  mtls: { mode: STRICT }
  portLevelMtls:
    8081: { mode: UNSET }
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: { name: allow-frontend, namespace: shop }
spec: { action: ALLOW, rules: [{ from: [{ source: { principals: [x] } }] }] }
`;

function parsed(text: string): Snapshot {
  const result = parseConfig(text, 'test.yaml');
  if (!result.ok) assert.fail(result.error.map(formatConfigError).join('\n'));
  return result.value;
}

function errorsOf(text: string): ConfigError[] {
  const result = parseConfig(text, 'test.yaml');
  assert.equal(result.ok, false, 'expected the config to be rejected');
  return result.ok ? [] : result.error;
}

/** The config must be rejected with exactly these problems, as `object: field: message` prefixes. */
function assertErrors(text: string, expected: { object: string; field: string; message?: RegExp }[]): void {
  const errors = errorsOf(text);
  assert.deepEqual(
    errors.map((e) => ({ object: e.object, field: e.field })),
    expected.map(({ object, field }) => ({ object, field })),
    errors.map(formatConfigError).join('\n'),
  );
  expected.forEach((e, i) => {
    if (e.message) assert.match(errors[i].message, e.message);
  });
}

const pod = (spec: string, status = 'status: { podIP: 10.0.0.1 }', metadata = 'metadata: { name: web }'): string =>
  `apiVersion: v1\nkind: Pod\n${metadata}\nspec: ${spec}\n${status}\n`;

describe('parseConfig: valid streams', () => {
  it('converts every modelled kind into plain objects', () => {
    const s = parsed(VALID);
    assert.deepEqual(s.namespaces, [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }]);
    assert.deepEqual(s.nodes, [{ name: 'node-a', internalIPs: ['192.168.50.2', 'fd00:50::2'] }]);
    assert.deepEqual(s.pods[0], {
      namespace: 'shop',
      name: 'web-7d4b9c-x2x4q',
      labels: { app: 'web' },
      annotations: { 'weft.dev/cgroup': '/sys/fs/cgroup/weft/web/' },
      nodeName: 'node-a',
      serviceAccount: 'web',
      ips: ['10.0.1.5', 'fd00:1::5'],
      cgroupPath: '/sys/fs/cgroup/weft/web',
    });
    assert.deepEqual(s.services[0].clusterIPs, ['10.96.0.10', 'fd00:96::a']);
    assert.deepEqual(s.services[0].ports, [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' },
      { name: 'grpc', port: 9090, targetPort: 'grpc', protocol: 'TCP' },
    ]);
    assert.deepEqual(s.peerAuthentications, [
      { namespace: 'shop', name: 'strict-web', matchLabels: { app: 'web' }, mode: 'STRICT', portLevel: { 8081: 'UNSET' } },
    ]);
    assert.deepEqual(s.authorizationPolicies, [
      { namespace: 'shop', name: 'allow-frontend', action: 'ALLOW', rules: [{ from: [{ principals: ['x'] }] }] },
    ]);
  });

  it('defaults the namespace, the service account and a missing cgroup', () => {
    const db = parsed(VALID).pods[1];
    assert.equal(db.namespace, 'default');
    assert.equal(db.serviceAccount, 'default');
    assert.equal(db.cgroupPath, undefined);
    assert.equal('cgroupPath' in db, false);
  });

  it('reads kind: List items like documents', () => {
    const s = parsed(`
apiVersion: v1
kind: List
metadata: { resourceVersion: "" }
items:
  - { apiVersion: v1, kind: Namespace, metadata: { name: a } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: p, namespace: a }
    spec: { nodeName: n }
    status: { podIP: 10.0.0.9 }
`);
    assert.deepEqual(s.namespaces.map((n) => n.name), ['a']);
    assert.deepEqual(s.pods.map((p) => `${p.namespace}/${p.name}`), ['a/p']);
  });

  it('accepts IPv6-only pods and normalises their addresses', () => {
    const s = parsed(pod('{ nodeName: n }', 'status: { podIPs: [{ ip: "FD00:0:0::1" }, { ip: "fd00::1" }] }'));
    assert.deepEqual(s.pods[0].ips, ['fd00::1']);
  });

  it('treats an empty stream and empty documents as nothing', () => {
    assert.deepEqual(parsed(''), parsed('---\n---\n# only a comment\n'));
    assert.equal(parsed('').pods.length, 0);
  });

  it('lets host-network pods share their node address', () => {
    const hostPod = (name: string): string => pod('{ nodeName: n, hostNetwork: true }', 'status: { podIP: 192.168.1.1 }', `metadata: { name: ${name} }`);
    assert.equal(parsed(`${hostPod('a')}---\n${hostPod('b')}`).pods.length, 2);
  });
});

describe('parseConfig: every problem is an error naming object and field', () => {
  it('rejects an unknown kind', () => {
    assertErrors('apiVersion: v1\nkind: Deployment\nmetadata: { name: x }\n', [{ object: 'document 1', field: 'kind', message: /unknown kind "Deployment"/ }]);
  });

  it('rejects a wrong apiVersion', () => {
    assertErrors('apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: pa, namespace: x }\n', [
      { object: 'PeerAuthentication x/pa', field: 'apiVersion', message: /must be "security.weft.dev\/v1"/ },
    ]);
  });

  it('rejects a missing required field with the message the operator sees', () => {
    const errors = errorsOf(pod('{ containers: [] }'));
    assert.deepEqual(errors.map(formatConfigError), ['Pod default/web: spec.nodeName: must be a non-empty string']);
  });

  it('rejects a pod without an address', () => {
    assertErrors(pod('{ nodeName: n }', 'status: { phase: Pending }'), [{ object: 'Pod default/web', field: 'status.podIP', message: /must be set/ }]);
  });

  it('rejects mistyped fields', () => {
    assertErrors(
      pod('{ nodeName: 7, serviceAccountName: "" }', 'status: { podIP: 10.0.0.1 }', 'metadata: { name: web, labels: { version: 2 } }'),
      [
        { object: 'Pod default/web', field: 'metadata.labels.version', message: /must be a string/ },
        { object: 'Pod default/web', field: 'spec.nodeName', message: /must be a non-empty string/ },
        { object: 'Pod default/web', field: 'spec.serviceAccountName', message: /must be a non-empty string/ },
      ],
    );
  });

  it('rejects invalid IP addresses', () => {
    assertErrors(pod('{ nodeName: n }', 'status: { podIP: 10.0.0.256, podIPs: [{ ip: "fd00::1::2" }, { ip: "fe80::1%eth0" }] }'), [
      { object: 'Pod default/web', field: 'status.podIP', message: /"10.0.0.256" is not an IPv4 or IPv6 address/ },
      { object: 'Pod default/web', field: 'status.podIPs[0].ip', message: /not an IPv4 or IPv6 address/ },
      { object: 'Pod default/web', field: 'status.podIPs[1].ip', message: /not an IPv4 or IPv6 address/ },
    ]);
    assertErrors('apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { clusterIP: 10.96.0 }\n', [
      { object: 'Service default/s', field: 'spec.clusterIP', message: /not an IPv4 or IPv6 address/ },
    ]);
  });

  it('rejects misspelt fields it reads and names the one that was meant', () => {
    assertErrors(pod('{ nodename: n }'), [
      { object: 'Pod default/web', field: 'spec.nodename', message: /did you mean "nodeName"/ },
      { object: 'Pod default/web', field: 'spec.nodeName' },
    ]);
    assertErrors(pod('{ nodeName: n }', 'status: { podIp: 10.0.0.1, podIP: 10.0.0.1 }', 'metadata: { name: web, label: { a: b } }'), [
      { object: 'Pod default/web', field: 'metadata.label', message: /unknown field/ },
      { object: 'Pod default/web', field: 'status.podIp', message: /did you mean "podIP"/ },
    ]);
  });

  it('rejects unknown fields in every modelled part', () => {
    assertErrors(
      `apiVersion: v1
kind: Service
metadata: { name: s }
spec:
  selecter: { app: web }
  ports: [{ port: 80, targetport: 8080 }]
---
apiVersion: security.weft.dev/v1
kind: PeerAuthentication
metadata: { name: pa }
spec: { mtls: { mode: STRICT, level: 2 } }
---
apiVersion: v1
kind: Node
metadata: { name: n }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1, ip: x }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: x }
sepc: {}
`,
      [
        { object: 'Service default/s', field: 'spec.selecter', message: /did you mean "selector"/ },
        { object: 'Service default/s', field: 'spec.ports[0].targetport', message: /did you mean "targetPort"/ },
        { object: 'PeerAuthentication default/pa', field: 'spec.mtls.level' },
        { object: 'Node n', field: 'status.addresses[0].ip' },
        { object: 'Namespace x', field: 'sepc' },
      ],
    );
  });

  it('rejects duplicate objects, naming where the first one is', () => {
    const ns = 'apiVersion: v1\nkind: Namespace\nmetadata: { name: a }\n';
    assertErrors(`${ns}---\n${pod('{ nodeName: n }')}---\n${ns}---\n${pod('{ nodeName: n }', 'status: { podIP: 10.0.0.2 }', 'metadata: { name: web, namespace: default }')}`, [
      { object: 'Namespace a', field: 'metadata.name', message: /already defined in document 1/ },
      { object: 'Pod default/web', field: 'metadata.name', message: /already defined in document 2/ },
    ]);
  });

  it('allows the same name for different kinds and namespaces', () => {
    const s = parsed(`${pod('{ nodeName: n }')}---\n${pod('{ nodeName: n }', 'status: { podIP: 10.0.0.2 }', 'metadata: { name: web, namespace: other }')}---
apiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec: { ports: [{ port: 80 }] }\n`);
    assert.equal(s.pods.length, 2);
    assert.equal(s.services.length, 1);
  });

  it('rejects a relative or escaping cgroup path', () => {
    const withCgroup = (path: string): string => pod('{ nodeName: n }', undefined, `metadata: { name: web, annotations: { weft.dev/cgroup: "${path}" } }`);
    assertErrors(withCgroup('weft/web'), [{ object: 'Pod default/web', field: 'metadata.annotations[weft.dev/cgroup]', message: /must be an absolute path/ }]);
    assertErrors(withCgroup('/sys/fs/cgroup/../etc'), [{ object: 'Pod default/web', field: 'metadata.annotations[weft.dev/cgroup]', message: /"\.\."/ }]);
  });

  it('rejects two pods claiming one address, in either spelling', () => {
    assertErrors(`${pod('{ nodeName: n }', 'status: { podIP: "fd00::7" }')}---\n${pod('{ nodeName: n }', 'status: { podIP: "fd00:0::7" }', 'metadata: { name: other }')}`, [
      { object: 'Pod default/other', field: 'status.podIP', message: /fd00::7 is already the address of Pod default\/web/ },
    ]);
  });

  it('rejects invalid PeerAuthentication modes and port-level modes without a selector', () => {
    assertErrors('apiVersion: security.weft.dev/v1\nkind: PeerAuthentication\nmetadata: { name: pa }\nspec:\n  mtls: { mode: strict }\n  portLevelMtls: { 99999: { mode: STRICT } }\n', [
      { object: 'PeerAuthentication default/pa', field: 'spec.mtls.mode', message: /must be one of UNSET, DISABLE, PERMISSIVE, STRICT/ },
      { object: 'PeerAuthentication default/pa', field: 'spec.portLevelMtls', message: /needs spec.selector.matchLabels/ },
      { object: 'PeerAuthentication default/pa', field: 'spec.portLevelMtls[99999]', message: /port number/ },
    ]);
  });

  it('rejects a port-level mode, which the datapath would not carry out (STRICT is per pod)', () => {
    const spec = (entries: string) => `apiVersion: security.weft.dev/v1\nkind: PeerAuthentication\nmetadata: { name: pa }\nspec:\n  selector: { matchLabels: { app: web } }\n  mtls: { mode: STRICT }\n  portLevelMtls: { ${entries} }\n`;
    assertErrors(spec('8081: { mode: PERMISSIVE }, 9090: { mode: DISABLE }'), [
      { object: 'PeerAuthentication default/pa', field: 'spec.portLevelMtls[8081].mode', message: /PERMISSIVE for port 8081 is not enforced by Weft: the mode applies to the whole pod/ },
      { object: 'PeerAuthentication default/pa', field: 'spec.portLevelMtls[9090].mode', message: /DISABLE for port 9090 is not enforced/ },
    ]);
    assertErrors(spec('8081: { mode: STRICT }'), [
      { object: 'PeerAuthentication default/pa', field: 'spec.portLevelMtls[8081].mode', message: /STRICT for port 8081 is not enforced/ },
    ]);
  });

  it('rejects objects it cannot name, by document and item', () => {
    assertErrors('apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: { nodeName: n }\nstatus: { podIP: 10.0.0.1 }\n---\n- not an object\n---\napiVersion: v1\nkind: List\nitems: [{ apiVersion: v1, kind: Node }]\n', [
      { object: 'Pod in document 1', field: 'metadata.name', message: /must be a non-empty string/ },
      { object: 'document 2', field: '' },
      { object: 'Node in document 3 items[0]', field: 'metadata', message: /must be a mapping/ },
      { object: 'Node in document 3 items[0]', field: 'metadata.name' },
    ]);
  });

  it('reports YAML syntax errors with the document and line', () => {
    const errors = errorsOf(`${pod('{ nodeName: n }')}---\napiVersion: v1\nkind: Namespace\nmetadata: { name: [a }\n`);
    assert.deepEqual(new Set(errors.map((e) => e.object)), new Set(['document 2']), errors.map(formatConfigError).join('\n'));
    assert.match(errors[0].message, /^YAML syntax error at test\.yaml:9:\d+: /);
  });

  it('collects every problem in the stream instead of stopping at the first', () => {
    const errors = errorsOf(`
apiVersion: v1
kind: Pod
metadata: { name: a }
spec: { nodename: n }
status: { podIP: nope }
---
apiVersion: v2
kind: Service
metadata: { name: s }
spec: { ports: [{ port: 0 }] }
---
kind: Gadget
`);
    assert.deepEqual(errors.map((e) => `${e.object}: ${e.field}`), [
      'Pod default/a: spec.nodename',
      'Pod default/a: spec.nodeName',
      'Pod default/a: status.podIP',
      'Service default/s: apiVersion',
      'Service default/s: spec.ports[0].port',
      'document 3: kind',
    ]);
  });

  it('formats errors as object: field: message', () => {
    assert.equal(formatConfigError({ object: 'Pod default/web', field: 'spec.nodeName', message: 'must be a non-empty string' }), 'Pod default/web: spec.nodeName: must be a non-empty string');
    assert.equal(formatConfigError({ object: 'document 3', field: '', message: 'must be a mapping' }), 'document 3: must be a mapping');
  });
});

it('an HTTPRoute parentRef to a Service without group (the Gateway API defaults it to gateway.networking.k8s.io) and a TrafficPolicy without targetRefs are refused by field', () => {
  const errors = parseConfig(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-route, namespace: shop }
spec: { parentRefs: [{ kind: Service, name: web }] }
---
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: { name: web-faults, namespace: shop }
spec: {}
`, 'test.yaml');
  assert.ok(!errors.ok);
  assert.deepEqual(errors.error.map((e) => [e.object, e.field]), [['HTTPRoute shop/web-route', 'spec.parentRefs[0].group'], ['TrafficPolicy shop/web-faults', 'spec.targetRefs']]);
  assert.match(errors.error[0]!.message, /defaults to gateway.networking.k8s.io .*write group: ""/);
});
