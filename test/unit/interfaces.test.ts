/**
 * Finding a pod's host-side interface from the kernel's answers, on output captured from the real
 * tools (interfaces-captured.ts): the three CNI wirings resolve to the pod's own veth, and every
 * case where no such interface can be named says why instead of guessing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFdb, parseLinks, parseNeighbours, parseRouteBatch } from '../../agent/redirect/interface-facts';
import { resolvePodInterface, resolvePodInterfaces, type InterfaceFacts } from '../../agent/redirect/interface-resolve';
import { FDB, LINKS, NEIGH, NEIGH_FAILED, NEIGH_PROBING, ROUTE_ASKED, ROUTE_STDERR, ROUTE_STDOUT } from './interfaces-captured';

const IF = { lo: 1, cni0: 2, vp1: 3, vq1: 4, vs1: 5, up0p: 6, up0: 7 };

function facts(over: Partial<InterfaceFacts> = {}): InterfaceFacts {
  return {
    links: parseLinks(LINKS),
    routes: parseRouteBatch(ROUTE_ASKED, ROUTE_STDOUT, ROUTE_STDERR),
    neighbours: parseNeighbours(NEIGH),
    fdb: new Map([['cni0', parseFdb(FDB)]]),
    uplinkIps: ['172.31.0.2'],
    ...over,
  };
}

function reasonOf(r: ReturnType<typeof resolvePodInterface>): string {
  assert.equal(r.ok, false, `expected no interface, got ${JSON.stringify(r)}`);
  return r.ok ? '' : r.reason;
}

describe('parsing iproute2 JSON', () => {
  test('links: kind, master and addresses (canonical)', () => {
    const links = parseLinks(LINKS);
    assert.deepEqual(links.map((l) => [l.name, l.ifindex, l.kind, l.master]), [
      ['lo', 1, undefined, undefined], ['cni0', 2, 'bridge', undefined], ['vp1', 3, 'veth', 'cni0'],
      ['vq1', 4, 'veth', undefined], ['vs1', 5, 'veth', undefined], ['up0p', 6, 'veth', undefined], ['up0', 7, 'veth', undefined],
    ]);
    assert.deepEqual(links.find((l) => l.name === 'cni0')!.addresses, ['10.99.0.1', 'fd00:99::fe', 'fe80::6073:9aff:fe34:8f6e']);
  });

  test('a route batch: answers by address asked; a failed line gets the kernel\'s message', () => {
    const r = parseRouteBatch(ROUTE_ASKED, ROUTE_STDOUT, ROUTE_STDERR);
    assert.deepEqual(r.get('10.99.0.5'), { ok: true, dev: 'cni0' });
    assert.deepEqual(r.get('10.96.0.1'), { ok: true, dev: 'up0', gateway: '172.31.0.1' });
    assert.deepEqual(r.get('fd00:99::5'), { ok: true, dev: 'cni0' });
    assert.deepEqual(r.get('fd00:77::1'), { ok: false, error: 'Network is unreachable' });
    assert.deepEqual(r.get('172.31.0.2'), { ok: true, dev: 'lo', type: 'local' });
    assert.equal(r.size, ROUTE_ASKED.length);
  });

  test('an address the batch neither answered nor failed is reported, not dropped', () => {
    const r = parseRouteBatch(['10.0.0.1', '10.0.0.2'], '', '');
    assert.deepEqual(r.get('10.0.0.2'), { ok: false, error: 'ip route get gave no answer' });
  });

  test('neighbours and the forwarding database', () => {
    assert.deepEqual(parseNeighbours(NEIGH)[0], { ip: '10.99.0.5', dev: 'cni0', mac: '8a:4a:7b:4e:e1:66', state: ['REACHABLE'] });
    assert.deepEqual(parseNeighbours(NEIGH_PROBING)[0], { ip: '10.99.0.9', dev: 'cni0', mac: undefined, state: ['INCOMPLETE'] });
    const fdb = parseFdb(FDB);
    assert.deepEqual(fdb.filter((e) => !e.self && e.master === 'cni0'), [
      { mac: '8a:4a:7b:4e:e1:66', port: 'vp1', master: 'cni0', self: false },
      { mac: '7a:ce:76:d5:4a:4f', port: 'vp1', master: 'cni0', self: false },
    ]);
  });

  test('output that is not JSON names the tool', () => {
    assert.throws(() => parseLinks('Usage: ip ...'), /ip -j -d addr show: output is not JSON/);
  });
});

describe('resolving a pod\'s host-side interface', () => {
  test('ptp: a /32 host route names the pod\'s veth', () => {
    assert.deepEqual(resolvePodInterface(['10.98.0.7'], facts()), { ok: true, ifindexes: [IF.vq1], hops: [{ ip: '10.98.0.7', dev: 'vq1' }] });
  });

  test('subnet: the connected /30 on the host side names the pod\'s veth (no host route needed)', () => {
    assert.deepEqual(resolvePodInterface(['10.97.0.6'], facts()), { ok: true, ifindexes: [IF.vs1], hops: [{ ip: '10.97.0.6', dev: 'vs1' }] });
  });

  test('bridge: the FIB says cni0; the neighbour MAC and the FDB name the port, for both families', () => {
    assert.deepEqual(resolvePodInterface(['10.99.0.5', 'fd00:99::5'], facts()), {
      ok: true, ifindexes: [IF.vp1], hops: [{ ip: '10.99.0.5', dev: 'cni0', port: 'vp1' }, { ip: 'fd00:99::5', dev: 'cni0', port: 'vp1' }],
    });
  });

  test('bridge: a pod the node has not resolved yet is probed, not guessed', () => {
    const r = resolvePodInterface(['10.99.0.5'], facts({ neighbours: [] }));
    assert.match(reasonOf(r), /behind bridge cni0, but its MAC address is not known yet/);
    assert.deepEqual(!r.ok && r.probes, [{ ip: '10.99.0.5', bridge: 'cni0' }]);
    const probing = parseRouteBatch(['10.99.0.9'], '[{"dst":"10.99.0.9","dev":"cni0","flags":[],"uid":0,"cache":[]}]', '');
    assert.match(reasonOf(resolvePodInterface(['10.99.0.9'], facts({ routes: probing, neighbours: parseNeighbours(NEIGH_PROBING) }))), /not known yet \(neighbour entry INCOMPLETE\)/);
    assert.match(reasonOf(resolvePodInterface(['10.99.0.9'], facts({ routes: probing, neighbours: parseNeighbours(NEIGH_FAILED) }))), /\(neighbour entry FAILED\)/);
  });

  test('bridge: a MAC the forwarding database has not learned (aged out) is probed', () => {
    const r = resolvePodInterface(['10.99.0.5'], facts({ fdb: new Map([['cni0', parseFdb(FDB).filter((e) => e.mac !== '8a:4a:7b:4e:e1:66')]]) }));
    assert.match(reasonOf(r), /MAC 8a:4a:7b:4e:e1:66, which the bridge's forwarding database does not hold yet/);
    assert.deepEqual(!r.ok && r.probes, [{ ip: '10.99.0.5', bridge: 'cni0' }]);
  });

  test('bridge: a MAC learned on the uplink port is a host elsewhere, never a pod port', () => {
    const links = parseLinks(LINKS).map((l) => (l.name === 'up0p' ? { ...l, master: 'cni0' } : l));
    const fdb = [...parseFdb(FDB).filter((e) => e.mac !== '8a:4a:7b:4e:e1:66'), { mac: '8a:4a:7b:4e:e1:66', port: 'up0', master: 'cni0', self: false }];
    assert.match(reasonOf(resolvePodInterface(['10.99.0.5'], facts({ links, fdb: new Map([['cni0', fdb]]) }))), /through up0 .* not a pod's own veth/);
  });

  test('bridge: a MAC on two ports is ambiguous', () => {
    const fdb = [...parseFdb(FDB), { mac: '8a:4a:7b:4e:e1:66', port: 'vq1', master: 'cni0', self: false }];
    assert.match(reasonOf(resolvePodInterface(['10.99.0.5'], facts({ fdb: new Map([['cni0', fdb]]) }))), /learned on several ports of cni0 \(vp1, vq1\)/);
  });

  test('no route: the kernel\'s message is the reason', () => {
    assert.match(reasonOf(resolvePodInterface(['fd00:77::1'], facts())), /^fd00:77::1: the node has no route to it \(Network is unreachable\)$/);
  });

  test('routed via a gateway: the pod is not on this node', () => {
    assert.match(reasonOf(resolvePodInterface(['10.96.0.1'], facts())), /routed via 172\.31\.0\.1 on up0/);
  });

  test('the node\'s own address, and the node\'s uplink, are never a pod\'s interface', () => {
    assert.match(reasonOf(resolvePodInterface(['172.31.0.2'], facts())), /an address of the node itself/);
    const onLink = parseRouteBatch(['172.31.0.9'], '[{"dst":"172.31.0.9","dev":"up0","prefsrc":"172.31.0.2","flags":[],"uid":0,"cache":[]}]', '');
    assert.match(reasonOf(resolvePodInterface(['172.31.0.9'], facts({ routes: onLink }))), /on the node's uplink up0/);
  });

  test('a device shared by many destinations (no veth: a tunnel, a NIC) is refused by kind', () => {
    const links = parseLinks(LINKS).map((l) => (l.name === 'vq1' ? { ...l, kind: 'vxlan' } : l));
    assert.match(reasonOf(resolvePodInterface(['10.98.0.7'], facts({ links }))), /routed out of vq1 \(vxlan\), which is not a pod's own veth/);
  });

  test('every address must resolve: one lost family makes the pod unresolved', () => {
    assert.match(reasonOf(resolvePodInterface(['10.98.0.7', 'fd00:77::1'], facts())), /fd00:77::1: the node has no route/);
  });

  test('a pod without addresses is reported', () => {
    assert.match(reasonOf(resolvePodInterface([], facts())), /no IP address yet/);
  });

  test('all pods: a STRICT pod whose interface another pod resolves to is not enforced; a PERMISSIVE one keeps it', () => {
    const both = resolvePodInterfaces([
      { key: 'a/strict', ips: ['10.99.0.5'], strict: true },
      { key: 'a/twin', ips: ['fd00:99::5'], strict: false },
      { key: 'a/ptp', ips: ['10.98.0.7'], strict: true },
    ], facts());
    assert.match(reasonOf(both.get('a/strict')!), /interface shared with other pods: vp1 also carries a\/twin/);
    assert.equal(both.get('a/twin')!.ok, true);
    assert.equal(both.get('a/ptp')!.ok, true);
  });
});
