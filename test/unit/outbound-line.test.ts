// The proxies write a line from the ends they hold without copying the record. The outbound proxy writes a tunnelled connection's line as endsMembers(record) followed by
// dst.hbone_addr (outbound.ts), instead of copying the record to add hboneAddr: the two must be the
// same text for every shape of ends, or the line would change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strMember } from '../../agent/core/json-text';
import { deliveredConnectionMembers, deliveredOutcomeMembers, endsMembers, type ConnectionEnds, type DeliveredExtras, type Outcome } from '../../agent/proxy/access-log';

const web = { namespace: 'shop', name: 'web-0', workload: 'web', identity: 'spiffe://cluster.local/ns/shop/sa/web', node: 'n1' };
const api = { namespace: 'shop', name: 'api-0', workload: 'api', identity: 'spiffe://cluster.local/ns/shop/sa/api', node: 'n2' };

test('outbound line: ends then dst.hbone_addr is the same text as the ends with hboneAddr, for every shape of ends', () => {
  const shapes: ConnectionEnds[] = [
    { direction: 'outbound', srcIp: '10.0.1.5', srcPort: 40000, dstIp: '10.0.2.7', dstPort: 8080 },
    { direction: 'outbound', srcIp: '10.0.1.5', srcPort: 40000, src: web, dstIp: '10.0.2.7', dstPort: 8080, dst: api },
    { direction: 'outbound', srcIp: '10.0.1.5', srcPort: 40000, src: web, dstIp: '10.0.2.7', dstPort: 8080, dst: api, dstService: { namespace: 'shop', name: 'api' } },
    { direction: 'outbound', srcIp: 'fd00::1:5', srcPort: 1, srcIdentity: 'spiffe://cluster.local/ns/x/sa/y', dstIp: 'fd00::2:7', dstPort: 443 },
    { direction: 'outbound', srcIp: '10.0.1.5', srcPort: 40000, src: { ...web, name: 'we"b\\0' }, dstIp: '10.0.2.7', dstPort: 8080 },
  ];
  for (const hbone of ['192.168.0.2:15008', '[fd00::2]:15008']) {
    for (const r of shapes) {
      assert.equal(endsMembers(r) + strMember('dst.hbone_addr', hbone), endsMembers({ ...r, hboneAddr: hbone }), JSON.stringify(r));
    }
  }
});

test('delivered line (deliver.ts): ends then deliveredOutcomeMembers is the same text as deliveredConnectionMembers of the whole record', () => {
  const ends: ConnectionEnds[] = [
    { direction: 'inbound', srcIp: '10.0.1.5', srcPort: 40000, srcIdentity: 'spiffe://cluster.local/ns/shop/sa/web', dstIp: '10.0.2.7', dstPort: 8080, dst: api },
    { direction: 'outbound', srcIp: '10.0.1.5', srcPort: 40000, src: web, dstIp: '10.0.1.7', dstPort: 8080, dst: { ...api, node: 'n1' }, dstService: { namespace: 'shop', name: 'api' } },
  ];
  const outcomes: Outcome[] = [
    { decision: 'allow', bytesSent: 10, bytesRecv: 20, durationMs: 1.23456 },
    { decision: 'deny', bytesSent: 0, bytesRecv: 0, durationMs: 0.5, error: 'no ALLOW policy matches "shop/api"' },
  ];
  const extras: DeliveredExtras[] = [{}, { policy: 'shop/allow-web', rule: 0, audit: ['shop/audit'] }, { protocol: 'http1', requests: 3 }];
  for (const r of ends) for (const o of outcomes) for (const e of extras) {
    assert.equal(endsMembers(r) + deliveredOutcomeMembers(o, e), deliveredConnectionMembers({ ...r, ...o }, e), JSON.stringify({ r, o, e }));
  }
});
