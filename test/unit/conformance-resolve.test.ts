// Host resolution of the conformance client, as cluster DNS would answer a pod (search list,
// ndots), template variables, ports and the Host override.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveName, resolveTarget, searchCandidates, splitHostPort, type DnsService } from '../conformance/resolve-host';

const MESH = 'gateway-conformance-mesh';
const CONSUMER = 'gateway-conformance-mesh-consumer';
const SERVICES: DnsService[] = [
  { name: 'echo', namespace: MESH, clusterIP: '10.96.77.12' },
  { name: 'echo-v1', namespace: MESH, clusterIP: '10.96.77.10' },
  { name: 'echo-v2', namespace: MESH, clusterIP: '10.96.77.11' },
];
const VARS = { ECHO_V2_POD_IP: '10.244.2.1' };
const target = (host: string, ns = MESH, headers: Record<string, string> = {}, protocol = 'http') => resolveTarget({ protocol, host, headers }, ns, SERVICES, VARS);

test('a bare name resolves in the client\'s namespace only', () => {
  const t = target('echo');
  assert.ok(t.ok);
  assert.deepEqual(t.value, { ip: '10.96.77.12', port: 80, authority: 'echo', host: 'echo', service: `echo.${MESH}` });
  const other = target('echo', CONSUMER);
  assert.ok(!other.ok);
  assert.match(other.error, /does not resolve from namespace gateway-conformance-mesh-consumer/);
});

test('name.namespace, name.namespace.svc and the full name resolve from anywhere', () => {
  for (const host of [`echo-v1.${MESH}`, `echo-v1.${MESH}.svc`, `echo-v1.${MESH}.svc.cluster.local`, `echo-v1.${MESH}.svc.cluster.local.`]) {
    const t = target(host, CONSUMER);
    assert.ok(t.ok, host);
    assert.equal(t.value.ip, '10.96.77.10', host);
    assert.equal(t.value.authority, host, 'the Host header is the name as written');
  }
});

test('the port comes from the host, else the protocol; Host keeps the port as written', () => {
  const t = target('echo-v1:8080');
  assert.ok(t.ok);
  assert.deepEqual([t.value.ip, t.value.port, t.value.authority], ['10.96.77.10', 8080, 'echo-v1:8080']);
  const g = target('echo:7070', MESH, {}, 'grpc');
  assert.ok(g.ok);
  assert.deepEqual([g.value.port, g.value.authority], [7070, 'echo:7070']);
  assert.ok(!splitHostPort('echo:99999', 'http').ok);
});

test('a Host entry in the case\'s headers overrides the Host sent, not where it goes', () => {
  const t = target('echo-v2', MESH, { Host: 'echo-v1' });
  assert.ok(t.ok);
  assert.deepEqual([t.value.ip, t.value.authority], ['10.96.77.11', 'echo-v1']);
});

test('the pod IP template is filled in and used as is; an unknown variable is named', () => {
  const t = target('${ECHO_V2_POD_IP}:8080');
  assert.ok(t.ok);
  assert.deepEqual([t.value.ip, t.value.port, t.value.authority, t.value.service], ['10.244.2.1', 8080, '10.244.2.1:8080', undefined]);
  const bad = target('${NOPE}:8080');
  assert.ok(!bad.ok);
  assert.match(bad.error, /\$\{NOPE\} is not known/);
});

test('the search list is tried before the name itself below 5 dots, after it from 5 dots on', () => {
  assert.deepEqual(searchCandidates('echo', MESH), [`echo.${MESH}.svc.cluster.local`, 'echo.svc.cluster.local', 'echo.cluster.local', 'echo']);
  assert.equal(searchCandidates('a.b.c.d.e.f', MESH)[0], 'a.b.c.d.e.f');
  assert.ok(!resolveName('echo-v3', MESH, SERVICES).ok);
});
