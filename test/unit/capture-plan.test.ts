/** The pure parts of inbound capture: which addresses and interfaces, map encodings, the ip commands. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { captureAddresses, captureInterfaces, planSet, type DesiredPod } from '../../agent/redirect/plan';
import { decodeCaptureRoute, decodeConfig, decodeIpKey, encodeCaptureRoute, encodeConfig, encodeIpKey } from '../../agent/redirect/codec';
import { CAPTURE, INBOUND_PLAINTEXT_PORT, routingCommands } from '../../agent/redirect/capture-routing';
import { weft_config } from '../../agent/core/bpf-layout.generated';

const pod = (key: string, cgroupId: bigint, strict: boolean, ips: string[]): DesiredPod => ({ key, cgroupId, strict, ifindex: null, ips });

test('captured addresses: enrolled non-STRICT pods only, never the proxy\'s own cgroup, each once', () => {
  const desired = [
    pod('mesh/a', 10n, false, ['10.244.1.1', 'fd00:244:1::1']),
    pod('mesh/b', 11n, true, ['10.244.1.2']),
    pod('mesh/proxy', 99n, false, ['10.244.1.3']),
    pod('mesh/a-again', 12n, false, ['10.244.1.1']),
  ];
  assert.deepEqual(captureAddresses(desired, 99n), ['10.244.1.1', 'fd00:244:1::1']);
});

test('planSet adds what is missing and removes what is no longer wanted (restart adoption keeps the rest)', () => {
  assert.deepEqual(planSet(['a', 'b'], ['b', 'c']), { add: ['a'], remove: ['c'] });
  assert.deepEqual(planSet(['a'], ['a']), { add: [], remove: [] });
});

test('capture interfaces: uplinks and pod interfaces, once each, sorted; none while nothing is captured', () => {
  assert.deepEqual(captureInterfaces(['10.244.1.1'], [2], [7, 5, 2]), [2, 5, 7]);
  assert.deepEqual(captureInterfaces([], [2], [5]), []);
});

test('weft_capture keys round-trip for IPv4 and IPv6', () => {
  for (const ip of ['10.244.1.1', 'fd00:244:1::1']) assert.equal(decodeIpKey(encodeIpKey(ip)), ip);
  assert.notDeepEqual(encodeIpKey('0.0.0.1'), encodeIpKey('::1'));
});

test('the node config carries the capture port and mark, defaulting to 15006 and CAPTURE.mark', () => {
  const base = { proxyIp4: '172.30.1.1', proxyIp6: null, outboundPort: 15001, proxyCgroupId: 7n };
  assert.deepEqual(decodeConfig(encodeConfig(base)), { ...base, inboundPlaintextPort: INBOUND_PLAINTEXT_PORT, captureMark: CAPTURE.mark });
  assert.equal(decodeConfig(encodeConfig({ ...base, inboundPlaintextPort: 16006 })).inboundPlaintextPort, 16006);
});

test('the node config carries the capture ports, in the bytes an earlier agent left zero (same size, so its pinned map loads)', () => {
  const base = { proxyIp4: '172.30.1.1', proxyIp6: null, outboundPort: 15001, proxyCgroupId: 7n };
  const spread = encodeConfig({ ...base, capturePorts: { base: 15040, count: 16 } });
  assert.deepEqual(decodeConfig(spread).capturePorts, { base: 15040, count: 16 });
  assert.equal(spread.length, encodeConfig(base).length);
  const without = Buffer.from(spread);
  without.fill(0, weft_config.fields.capture_port_base.offset, weft_config.fields.capture_port_count.offset + 2);
  assert.deepEqual(without, encodeConfig(base), 'only those four bytes differ');
  assert.equal(decodeConfig(without).capturePorts, undefined, 'zero: the outbound port alone');
  assert.equal(weft_config.fields.capture_port_count.offset + 2, weft_config.fields.proxy_cgroup_id.offset, 'the fields sit in the padding before proxy_cgroup_id');
});

test('the route record round-trips; an unwritten record is null', () => {
  const r = { netnsIno: 4026531840n, mark: 0x2000, table: 15006, priority: 90 };
  assert.deepEqual(decodeCaptureRoute(encodeCaptureRoute(r)), r);
  assert.equal(decodeCaptureRoute(Buffer.alloc(24)), null);
});

test('routing commands: a fwmark rule and a local default route per family, removed the same way', () => {
  const add = routingCommands(CAPTURE, 'add').map((a) => a.join(' '));
  assert.deepEqual(add, [
    '-4 rule add pref 90 fwmark 0x2000/0x2000 lookup 15006',
    '-4 route replace local 0.0.0.0/0 dev lo table 15006',
    '-6 rule add pref 90 fwmark 0x2000/0x2000 lookup 15006',
    '-6 route replace local ::/0 dev lo table 15006',
  ]);
  assert.deepEqual(routingCommands(CAPTURE, 'del').map((a) => a[2]), ['del', 'del', 'del', 'del']);
});
