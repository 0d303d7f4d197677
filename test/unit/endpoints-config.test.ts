import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError, type ConfigError } from '../../agent/config/config-error';
import type { Snapshot } from '../../agent/config/objects';
import { parseConfig } from '../../agent/config/parse';

/** What the config file says about endpoints: pod readiness, termination, named container ports, and EndpointSlices. */

function parsed(text: string): Snapshot {
  const result = parseConfig(text, 'test.yaml');
  if (!result.ok) assert.fail(result.error.map(formatConfigError).join('\n'));
  return result.value;
}

/** The config must be rejected with exactly these problems (object, field), messages matched where given. */
function assertErrors(text: string, expected: { object: string; field: string; message?: RegExp }[]): void {
  const result = parseConfig(text, 'test.yaml');
  assert.equal(result.ok, false, 'expected the config to be rejected');
  const errors: ConfigError[] = result.ok ? [] : result.error;
  assert.deepEqual(errors.map((e) => ({ object: e.object, field: e.field })), expected.map(({ object, field }) => ({ object, field })), errors.map(formatConfigError).join('\n'));
  expected.forEach((e, i) => { if (e.message) assert.match(errors[i]!.message, e.message, formatConfigError(errors[i]!)); });
}

const pod = (opts: { meta?: string; spec?: string; status?: string } = {}): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: { name: web${opts.meta ?? ''} }\nspec: { nodeName: n${opts.spec ?? ''} }\nstatus: { podIP: 10.0.0.1${opts.status ?? ''} }\n`;

describe('Pod readiness, termination and container ports from the config file', () => {
  it('leaves a Running pod without conditions (and a pod without phase) ready, as configs written before did', () => {
    for (const status of ['', ', phase: Running']) {
      const p = parsed(pod({ status })).pods[0]!;
      assert.equal('ready' in p, false, status);
      assert.equal('terminating' in p, false, status);
      assert.equal('containerPorts' in p, false, status);
    }
  });

  it('follows the Ready condition when there are conditions, as podutil.IsPodReady', () => {
    const ready = (status: string): boolean | undefined => parsed(pod({ status })).pods[0]!.ready;
    assert.equal(ready(', phase: Running, conditions: [{ type: PodScheduled, status: "True" }, { type: Ready, status: "True", lastTransitionTime: "2030-01-01T00:00:00Z" }]'), undefined);
    assert.equal(ready(', phase: Running, conditions: [{ type: Ready, status: "False", reason: ContainersNotReady }]'), false);
    assert.equal(ready(', conditions: [{ type: Ready, status: "Unknown" }]'), false);
    assert.equal(ready(', phase: Running, conditions: [{ type: PodScheduled, status: "True" }]'), false, 'conditions without Ready: not ready');
    assert.equal(ready(', phase: Pending'), false);
    assert.equal(ready(', phase: Succeeded, conditions: [{ type: Ready, status: "True" }]'), false, 'a finished pod is never ready');
  });

  it('marks a pod with a deletionTimestamp terminating (and reads `null` as unset)', () => {
    assert.equal(parsed(pod({ meta: ', deletionTimestamp: "2030-01-01T00:00:30Z"' })).pods[0]!.terminating, true);
    assert.equal(parsed(pod({ meta: ', deletionTimestamp: "2030-01-01T00:00:30.5+02:00"' })).pods[0]!.terminating, true);
    assert.equal('terminating' in parsed(pod({ meta: ', deletionTimestamp: null' })).pods[0]!, false);
  });

  it('reads named TCP container ports, the first container with a name winning', () => {
    const p = parsed(pod({ spec: `, containers: [
      { name: a, image: x, ports: [{ name: http, containerPort: 8080 }, { name: dns, containerPort: 53, protocol: UDP }, { containerPort: 9000 }, { name: metrics, containerPort: 9090, protocol: TCP, hostPort: 19090, hostIP: 0.0.0.0 }] },
      { name: b, ports: [{ name: http, containerPort: 9999 }, { name: admin, containerPort: 15000 }] },
      { name: c } ]` })).pods[0]!;
    assert.deepEqual(p.containerPorts, { http: 8080, metrics: 9090, admin: 15000 });
  });

  it('names the object and field of each bad readiness or port field', () => {
    assertErrors(pod({
      meta: ', deletionTimestamp: yesterday',
      spec: `, containers: [
        { name: a, ports: [{ name: HTTP, containerPort: 80 }, { name: http, containerPort: 0 }, { name: web-port-name-too-long, containerPort: 81 }, { name: "8080", containerPort: 82 }, { name: x, containerPort: 83, protocol: tcp }, { name: y, containerPort: 84, hostport: 1 }] },
        { name: b, ports: [{ name: dup, containerPort: 1 }, { name: dup, containerPort: 2 }] },
        { name: c, ports: { name: p } } ]`,
      status: ', phase: Runing',
    }), [
      { object: 'Pod default/web', field: 'metadata.deletionTimestamp', message: /"yesterday" is not an RFC 3339 time/ },
      { object: 'Pod default/web', field: 'status.phase', message: /must be one of Pending, Running, Succeeded, Failed, Unknown/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[0].name', message: /"HTTP" is not a port name/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[1].containerPort', message: /must be a port number/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[2].name', message: /at most 15/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[3].name', message: /at least one letter/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[4].protocol', message: /must be one of TCP, UDP, SCTP/ },
      { object: 'Pod default/web', field: 'spec.containers[0].ports[5].hostport', message: /did you mean "hostPort"/ },
      { object: 'Pod default/web', field: 'spec.containers[1].ports[1].name', message: /"dup" is already the name of spec.containers\[1\].ports\[0\]/ },
      { object: 'Pod default/web', field: 'spec.containers[2].ports', message: /must be a list/ },
    ]);
    assertErrors(pod({ status: ', conditions: [{ type: Ready, status: yes }, { type: Ready, status: "True" }, { status: "True", probe: 1 }]' }), [
      { object: 'Pod default/web', field: 'status.conditions[0].status', message: /must be one of True, False, Unknown/ },
      { object: 'Pod default/web', field: 'status.conditions[1].type', message: /"Ready" appears twice/ },
      { object: 'Pod default/web', field: 'status.conditions[2].probe', message: /unknown field/ },
      { object: 'Pod default/web', field: 'status.conditions[2].type', message: /must be a non-empty string/ },
    ]);
  });
});

const SLICE = `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: { kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io }
  ownerReferences: [{ apiVersion: v1, kind: Service, name: web, uid: u1 }]
addressType: IPv6
ports:
  - { name: http, port: 8080, protocol: TCP, appProtocol: http }
  - { name: "", port: 9000 }
endpoints:
  - addresses: ["FD00:0::1"]
    conditions: { ready: true, serving: true, terminating: false }
    nodeName: node-a
    zone: z1
    targetRef: { kind: Pod, name: web-1, namespace: shop, uid: p1 }
  - addresses: ["fd00::2"]
    conditions: { ready: false, terminating: true }
    hints: { forZones: [{ name: z1 }] }
  - addresses: ["fd00::3"]
    targetRef: { kind: Node, name: node-x }
`;

describe('EndpointSlice from the config file', () => {
  it('converts a slice as kubectl shows it, absent conditions taking the API defaults', () => {
    assert.deepEqual(parsed(SLICE).endpointSlices, [{
      namespace: 'shop', name: 'web-abc12', service: 'web', addressType: 'IPv6',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }, { port: 9000, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['fd00::1'], ready: true, serving: true, terminating: false, nodeName: 'node-a', pod: 'web-1' },
        { addresses: ['fd00::2'], ready: false, serving: true, terminating: true },
        { addresses: ['fd00::3'], ready: true, serving: true, terminating: false },
      ],
    }]);
  });

  it('leaves endpointSlices out of a snapshot without slices, and reads `endpoints: null` as none', () => {
    assert.equal('endpointSlices' in parsed('apiVersion: v1\nkind: Namespace\nmetadata: { name: a }\n'), false);
    const empty = parsed('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: e, labels: { kubernetes.io/service-name: web } }\naddressType: IPv4\nports: null\nendpoints: null\n');
    assert.deepEqual(empty.endpointSlices, [{ namespace: 'default', name: 'e', service: 'web', addressType: 'IPv4', ports: [], endpoints: [] }]);
  });

  it('names the object and field of every problem', () => {
    assertErrors(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: bad, namespace: shop }
spec: {}
addressType: IPv4
ports:
  - { name: http, port: 80 }
  - { name: http, port: 0 }
  - { port: 81 }
  - { port: 82, protocol: HTTP }
  - { name: Web_Port, port: 83 }
endpoints:
  - { addresses: [] }
  - { addresses: [10.0.0.1, "fd00::1", not-an-ip], conditions: { ready: "yes", healthy: true }, nodeName: Node_A }
  - { addresses: [10.0.0.2], targetRef: { kind: Pod, namespace: other }, topology: {} }
  - { conditions: {} }
`, [
      { object: 'EndpointSlice shop/bad', field: 'spec', message: /unknown field/ },
      { object: 'EndpointSlice shop/bad', field: 'metadata.labels[kubernetes.io/service-name]', message: /must be set: it names the Service/ },
      { object: 'EndpointSlice shop/bad', field: 'ports[1].port', message: /must be a port number/ },
      { object: 'EndpointSlice shop/bad', field: 'ports[1].name', message: /"http" is already ports\[0\]/ },
      { object: 'EndpointSlice shop/bad', field: 'ports[3].protocol', message: /must be one of TCP, UDP, SCTP/ },
      { object: 'EndpointSlice shop/bad', field: 'ports[3].name', message: /an unnamed port is already ports\[2\]/ },
      { object: 'EndpointSlice shop/bad', field: 'ports[4].name', message: /not a lowercase RFC 1123 label/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[0].addresses', message: /must hold 1 to 100 addresses/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[1].conditions.healthy', message: /unknown field/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[1].addresses[1]', message: /fd00::1 is not an IPv4 address \(addressType is IPv4/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[1].addresses[2]', message: /"not-an-ip" is not an IPv4 or IPv6 address/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[1].conditions.ready', message: /must be true or false/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[1].nodeName', message: /not a lowercase RFC 1123 name/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[2].topology', message: /unknown field/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[2].targetRef.namespace', message: /"other" must be the EndpointSlice's own namespace "shop"/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[2].targetRef.name', message: /must be a non-empty string/ },
      { object: 'EndpointSlice shop/bad', field: 'endpoints[3].addresses', message: /must be a list/ },
    ]);
  });

  it('checks FQDN addresses as names and refuses a slice for an invalid Service name', () => {
    assert.deepEqual(parsed(SLICE.replace('addressType: IPv6', 'addressType: FQDN').replace(/\["FD00:0::1"\]|\["fd00::2"\]|\["fd00::3"\]/g, '[web.example.com]')).endpointSlices?.[0]?.endpoints.map((e) => e.addresses), [
      ['web.example.com'], ['web.example.com'], ['web.example.com'],
    ]);
    assertErrors('apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: e, labels: { kubernetes.io/service-name: Web.Svc } }\naddressType: FQDN\nendpoints: [{ addresses: [10.0.0.1, "bad name"] }]\n', [
      { object: 'EndpointSlice default/e', field: 'metadata.labels[kubernetes.io/service-name]', message: /not a lowercase RFC 1123 label/ },
      { object: 'EndpointSlice default/e', field: 'endpoints[0].addresses[1]', message: /not a lowercase RFC 1123 name/ },
    ]);
  });

  it('refuses the wrong apiVersion and an unknown addressType (without a second error for each address)', () => {
    assertErrors(SLICE.replace('discovery.k8s.io/v1', 'discovery.k8s.io/v1beta1'), [
      { object: 'EndpointSlice shop/web-abc12', field: 'apiVersion', message: /must be "discovery.k8s.io\/v1"/ },
    ]);
    assertErrors(SLICE.replace('addressType: IPv6', 'addressType: IPv5'), [
      { object: 'EndpointSlice shop/web-abc12', field: 'addressType', message: /must be one of IPv4, IPv6, FQDN/ },
    ]);
  });
});
