// The source address a tunnelled stream claims (Forwarded: for=) and when the destination believes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardedForOf } from '../../agent/tunnel/hbone-server';
import { tunnelSource } from '../../agent/proxy/inbound';
import { emptySnapshot } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';

test('Forwarded: for= is read in its RFC 7239 forms, and nothing else is', () => {
  assert.deepEqual(forwardedForOf('for="10.1.2.3:4711"'), { ip: '10.1.2.3', port: 4711 });
  assert.deepEqual(forwardedForOf('for=10.1.2.3'), { ip: '10.1.2.3' });
  assert.deepEqual(forwardedForOf('for="[fd00:0::1]:80"'), { ip: 'fd00::1', port: 80 });
  assert.deepEqual(forwardedForOf('proto=http;for="10.0.0.9:1"'), { ip: '10.0.0.9', port: 1 });
  assert.deepEqual(forwardedForOf(['for=10.0.0.1, for=10.0.0.2']), { ip: '10.0.0.1' });
  for (const bad of [undefined, '', 'for=web', 'for="_hidden"', 'for=10.0.0.300', 'by=10.0.0.1', 'for=unknown']) {
    assert.equal(forwardedForOf(bad), undefined, String(bad));
  }
});

test('a claimed source address is believed only when it is a pod running as the verified peer identity', () => {
  const snapshot = emptySnapshot();
  const pod = (name: string, sa: string, ip: string) => ({ namespace: 'shop', name, labels: {}, annotations: {}, nodeName: 'n1', serviceAccount: sa, ips: [ip] });
  snapshot.pods.push(pod('web', 'web', '10.1.0.5'), pod('db', 'db', '10.1.0.6'));
  const store = new WorkloadStore(snapshot);
  const base = { target: { ip: '10.2.0.1', port: 80 }, remoteAddress: '192.168.0.1', remotePort: 40000 };
  const web = 'spiffe://cluster.local/ns/shop/sa/web';
  assert.deepEqual(tunnelSource(store, { ...base, peerIdentity: web, forwardedFor: { ip: '10.1.0.5', port: 5555 } }),
    { ip: '10.1.0.5', port: 5555, pod: snapshot.pods[0] });
  // web's proxy claims db's address: not believed, the source is the tunnel's own peer.
  assert.deepEqual(tunnelSource(store, { ...base, peerIdentity: web, forwardedFor: { ip: '10.1.0.6', port: 5555 } }), { ip: '192.168.0.1', port: 40000 });
  assert.deepEqual(tunnelSource(store, { ...base, peerIdentity: web, forwardedFor: { ip: '10.9.9.9' } }), { ip: '192.168.0.1', port: 40000 });
  assert.deepEqual(tunnelSource(store, { ...base, peerIdentity: web }), { ip: '192.168.0.1', port: 40000 });
});
