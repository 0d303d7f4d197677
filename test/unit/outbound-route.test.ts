import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../agent/config/parse';
import { WorkloadStore } from '../../agent/state/store';
import { routeOutbound } from '../../agent/proxy/outbound-route';

const yaml = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { weft.dev/mesh: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 172.30.0.1 }, { type: InternalIP, address: "fd00:30::1" }] }
---
apiVersion: v1
kind: Node
metadata: { name: n2 }
status: { addresses: [{ type: InternalIP, address: 172.30.0.2 }, { type: InternalIP, address: "fd00:30::2" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop }
spec: { nodeName: n1, serviceAccountName: web }
status: { podIP: 10.244.1.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: api, namespace: shop }
spec: { nodeName: n2, serviceAccountName: api }
status: { podIPs: [{ ip: 10.244.2.1 }, { ip: "fd00:244:2::1" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: old, namespace: legacy }
spec: { nodeName: n2 }
status: { podIP: 10.244.2.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: optout, namespace: shop, labels: { weft.dev/mesh: disabled } }
spec: { nodeName: n2 }
status: { podIP: 10.244.2.3 }
---
apiVersion: v1
kind: Pod
metadata: { name: lost, namespace: shop }
spec: { nodeName: n9 }
status: { podIP: 10.244.9.1 }
`;

function store(): WorkloadStore {
  const r = parseConfig(yaml, 'test');
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return new WorkloadStore(r.value);
}

test('a meshed pod on another node goes through an HBONE tunnel to that node, expecting its identity', () => {
  const r = routeOutbound('10.244.2.1', 'n1', store());
  assert.equal(r.kind, 'hbone');
  if (r.kind !== 'hbone') return;
  assert.deepEqual([r.node, r.nodeAddress, r.port, r.identity], ['n2', '172.30.0.2', 15008, 'spiffe://cluster.local/ns/shop/sa/api']);
});

test('IPv6 destinations reach the node proxy over IPv6', () => {
  const r = routeOutbound('fd00:244:2::1', 'n1', store());
  assert.equal(r.kind === 'hbone' && r.nodeAddress, 'fd00:30::2');
});

test('a meshed pod on this node is delivered locally', () => {
  assert.equal(routeOutbound('10.244.1.1', 'n1', store()).kind, 'local');
});

test('pods outside the mesh, opted-out pods and unknown addresses pass through in plaintext', () => {
  const s = store();
  for (const ip of ['10.244.2.2', '10.244.2.3', '192.0.2.10']) assert.equal(routeOutbound(ip, 'n1', s).kind, 'passthrough', ip);
  const r = routeOutbound('10.244.2.2', 'n1', s);
  assert.match(r.kind === 'passthrough' ? r.reason : '', /legacy\/old is not in the mesh/);
});

test('a meshed pod whose node is unknown is unreachable, never sent in plaintext', () => {
  const r = routeOutbound('10.244.9.1', 'n1', store());
  assert.equal(r.kind, 'unreachable');
  assert.match(r.kind === 'unreachable' ? r.reason : '', /node n9/);
});
