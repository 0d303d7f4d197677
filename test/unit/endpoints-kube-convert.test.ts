import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointSlice, V1Pod } from '@kubernetes/client-node';
import { endpointSliceInfo, kindFragment, podInfo } from '../../agent/controlplane/discovery-kube-convert';

/**
 * Kubernetes API objects as the API server returns them (JSON, already validated) into Weft's
 * endpoint facts. Lenient, unlike the config file: what cannot be used is left out, not refused.
 */

const slice = (over: Partial<V1EndpointSlice> = {}): V1EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [],
  ...over,
});

describe('endpointSliceInfo', () => {
  it('applies the API defaults for absent conditions: ready and serving true, terminating false', () => {
    const info = endpointSliceInfo(slice({
      endpoints: [
        { addresses: ['10.0.0.1'] },
        { addresses: ['10.0.0.2'], conditions: {} },
        { addresses: ['10.0.0.3'], conditions: { ready: false } },
        { addresses: ['10.0.0.4'], conditions: { ready: false, serving: true, terminating: true } },
        { addresses: ['10.0.0.5'], conditions: { ready: false, serving: false, terminating: true } },
      ],
    }));
    assert.deepEqual(info?.endpoints.map((e) => [e.addresses[0], e.ready, e.serving, e.terminating]), [
      ['10.0.0.1', true, true, false],
      ['10.0.0.2', true, true, false],
      ['10.0.0.3', false, true, false],
      ['10.0.0.4', false, true, true],
      ['10.0.0.5', false, false, true],
    ]);
  });

  it('keeps the pod of a Pod targetRef in the slice namespace, the node, and canonical IPv6 addresses', () => {
    const info = endpointSliceInfo(slice({
      addressType: 'IPv6',
      endpoints: [
        { addresses: ['FD00:0::1', '10.0.0.1'], nodeName: 'node-a', zone: 'z', targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'u' } },
        { addresses: ['fd00::2'], targetRef: { kind: 'Pod', name: 'web-2' } },
        { addresses: ['fd00::3'], targetRef: { kind: 'Pod', name: 'elsewhere', namespace: 'other' } },
        { addresses: ['fd00::4'], targetRef: { kind: 'Node', name: 'node-b' } },
        { addresses: ['10.0.0.5'] },
      ],
    }));
    assert.deepEqual(info?.endpoints, [
      { addresses: ['fd00::1'], ready: true, serving: true, terminating: false, nodeName: 'node-a', pod: 'web-1' },
      { addresses: ['fd00::2'], ready: true, serving: true, terminating: false, pod: 'web-2' },
      { addresses: ['fd00::3'], ready: true, serving: true, terminating: false },
      { addresses: ['fd00::4'], ready: true, serving: true, terminating: false },
    ], 'an IPv4 address in an IPv6 slice is dropped, and an endpoint left without addresses with it');
  });

  it('reads ports with their defaults and drops those without a number', () => {
    const info = endpointSliceInfo(slice({ ports: [{ name: '', port: 80 }, { name: 'grpc', port: 9090, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' }, { name: 'all' }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    assert.deepEqual(info?.ports, [
      { port: 80, protocol: 'TCP' },
      { name: 'grpc', port: 9090, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ]);
  });

  it('skips a slice of no Service or of an unknown address type, and reads one without endpoints or ports', () => {
    assert.equal(endpointSliceInfo(slice({ metadata: { name: 'x', namespace: 'shop' } })), undefined);
    assert.equal(endpointSliceInfo(slice({ addressType: 'IPv7' })), undefined);
    assert.deepEqual(endpointSliceInfo({ addressType: 'IPv4', endpoints: undefined as never, metadata: { name: 'e', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } } }), {
      namespace: 'shop', name: 'e', service: 'web', addressType: 'IPv4', ports: [], endpoints: [],
    });
  });

  it('keeps FQDN addresses as names', () => {
    assert.deepEqual(endpointSliceInfo(slice({ addressType: 'FQDN', endpoints: [{ addresses: ['web.example.com'] }] }))?.endpoints[0]?.addresses, ['web.example.com']);
  });
});

describe('podInfo: readiness, termination and container ports', () => {
  const pod = (over: { status?: V1Pod['status']; metadata?: V1Pod['metadata']; containers?: NonNullable<V1Pod['spec']>['containers'] } = {}): V1Pod => ({
    metadata: { name: 'web-1', namespace: 'shop', uid: 'u1', ...over.metadata },
    spec: { nodeName: 'node-a', containers: over.containers ?? [] },
    status: { phase: 'Running', podIP: '10.0.0.1', ...over.status },
  });

  it('is ready only with a True Ready condition, as podutil.IsPodReady', () => {
    assert.equal(podInfo(pod({ status: { conditions: [{ type: 'Ready', status: 'True' }] } }))?.ready, undefined);
    assert.equal(podInfo(pod({ status: { conditions: [{ type: 'Ready', status: 'False' }] } }))?.ready, false);
    assert.equal(podInfo(pod({ status: { conditions: [{ type: 'Ready', status: 'Unknown' }] } }))?.ready, false);
    assert.equal(podInfo(pod({ status: { conditions: [{ type: 'ContainersReady', status: 'True' }] } }))?.ready, false);
    assert.equal(podInfo(pod())?.ready, false, 'a pod the API shows without conditions has not been found ready by the kubelet');
  });

  it('is terminating once it has a deletionTimestamp', () => {
    const ready = { conditions: [{ type: 'Ready', status: 'True' }] };
    assert.equal(podInfo(pod({ status: ready, metadata: { name: 'web-1', deletionTimestamp: new Date('2030-01-01T00:00:00Z') } }))?.terminating, true);
    assert.equal('terminating' in podInfo(pod({ status: ready }))!, false);
  });

  it('names its TCP container ports, the first container with a name winning', () => {
    const info = podInfo(pod({ containers: [
      { name: 'a', ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { containerPort: 9000 }] },
      { name: 'b', ports: [{ name: 'http', containerPort: 9999 }, { name: 'admin', containerPort: 15000, protocol: 'TCP' }] },
    ] }));
    assert.deepEqual(info?.containerPorts, { http: 8080, admin: 15000 });
    assert.equal('containerPorts' in podInfo(pod())!, false);
  });
});

describe('kindFragment: a custom object through the config file\'s kind registry', () => {
  it('gives what the object adds to a snapshot, and only that', () => {
    const pa = kindFragment('PeerAuthentication', { metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    assert.deepEqual(pa, { ok: true, value: { peerAuthentications: [{ namespace: 'shop', name: 'strict', mode: 'STRICT', portLevel: {} }] } });
  });

  it('says why an object is refused, by field', () => {
    const bad = kindFragment('PeerAuthentication', { metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICTER' } } });
    assert.deepEqual(bad, { ok: false, error: 'spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT' });
    assert.deepEqual(kindFragment('Gateway', { metadata: { name: 'g', namespace: 'shop' } }), { ok: false, error: 'Gateway is not a kind this version of Weft reads' });
  });
});
