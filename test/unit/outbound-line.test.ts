// The outbound proxy writes a tunnelled connection's line as endsMembers(record) followed by
// dst.hbone_addr (outbound.ts), instead of copying the record to add hboneAddr: the two must be the
// same text for every shape of ends, or the line would change.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strMember } from '../../agent/core/json-text';
import { endsMembers, type ConnectionEnds } from '../../agent/proxy/access-log';

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
