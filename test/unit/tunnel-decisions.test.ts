import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthority, formatAuthority } from '../../agent/tunnel/authority';
import { errorForSession, errorForStatus, HboneError } from '../../agent/tunnel/hbone-error';
import { spiffeIdOf } from '../../agent/tunnel/peer-identity';
import { childTraceparent, formatTraceparent, parseTraceparent } from '../../agent/tunnel/traceparent';
import { sniFor } from '../../agent/tunnel/sni';
import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

test('traceparent: the spec example parses and formats back', () => {
  const parsed = parseTraceparent(TP);
  assert.deepEqual(parsed, { ok: true, value: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: '01' } });
  assert.equal(formatTraceparent(parsed.ok ? parsed.value : assert.fail()), TP);
});

test('traceparent: malformed, upper-case, all-zero ids, version ff and extra fields on 00 are refused', () => {
  for (const bad of ['', 'garbage', TP.toUpperCase(), TP.replace('4bf92f3577b34da6a3ce929d0e0e4736', '0'.repeat(32)),
    TP.replace('00f067aa0ba902b7', '0'.repeat(16)), `ff${TP.slice(2)}`, `${TP}-extra`, TP.slice(0, -1)]) {
    assert.equal(parseTraceparent(bad).ok, false, bad);
  }
});

test('traceparent: a later version may append fields and is read by its first four', () => {
  assert.equal(parseTraceparent(`01${TP.slice(2)}-what-comes-next`).ok, true);
});

test('traceparent: a child keeps the trace and flags with a new span; absent or invalid starts a new trace', () => {
  const child = parseTraceparent(childTraceparent(TP));
  assert.ok(child.ok);
  assert.equal(child.value.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(child.value.flags, '01');
  assert.notEqual(child.value.parentId, '00f067aa0ba902b7');
  for (const incoming of [undefined, 'nonsense']) {
    const fresh = parseTraceparent(childTraceparent(incoming));
    assert.ok(fresh.ok);
    assert.notEqual(fresh.value.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  }
});

test('traceparent: ids drawn from the shared random block stay valid and distinct across many refills', () => {
  // 2,000 new traces draw 48,000 random bytes: the 4 KiB block is refilled about a dozen times.
  const traces = new Set<string>(), spans = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const tp = parseTraceparent(childTraceparent());
    assert.ok(tp.ok, 'a fresh traceparent parses');
    traces.add(tp.value.traceId);
    spans.add(tp.value.parentId);
  }
  assert.equal(traces.size, 2_000, 'every trace id differs');
  assert.equal(spans.size, 2_000, 'every span id differs');
});

test('sni: the name is the identity\'s digest, the same when asked again (kept), distinct per identity', () => {
  const a = 'spiffe://cluster.local/ns/a/sa/web', b = 'spiffe://cluster.local/ns/b/sa/web';
  const digest = (id: string) => `${createHash('sha256').update(id).digest('hex').slice(0, 40)}.hbone.weft`;
  assert.equal(sniFor(a), digest(a));
  assert.equal(sniFor(a), digest(a), 'a kept name is the same name');
  assert.equal(sniFor(b), digest(b));
  assert.notEqual(sniFor(a), sniFor(b));
  // past the cache's bound it starts over and still answers correctly
  for (let i = 0; i < 5_000; i++) sniFor(`spiffe://cluster.local/ns/n${i}/sa/x`);
  assert.equal(sniFor(a), digest(a));
});

test('authority: ip:port and [ipv6]:port are accepted, in canonical form', () => {
  assert.deepEqual(parseAuthority('10.0.0.7:8080'), { ok: true, value: { ip: '10.0.0.7', port: 8080 } });
  assert.deepEqual(parseAuthority('[fd00:0::1]:443'), { ok: true, value: { ip: 'fd00::1', port: 443 } });
  assert.equal(formatAuthority({ ip: 'fd00::1', port: 443 }), '[fd00::1]:443');
});

test('authority: names, missing or bad ports, unbracketed IPv6 and zones are refused', () => {
  for (const bad of [undefined, 'db.shop:5432', '10.0.0.7', '10.0.0.7:0', '10.0.0.7:65536', 'fd00::1:443', '[fd00::1%eth0]:443',
    '[10.0.0.7]:80', '10.0.0.7:80/x', '999.0.0.1:80', '']) {
    assert.equal(parseAuthority(bad).ok, false, String(bad));
  }
});

test('peer identity: exactly one valid SPIFFE URI SAN', () => {
  const cert = (subjectaltname?: string) => ({ subjectaltname, subject: {} }) as unknown as PeerCertificate;
  assert.deepEqual(spiffeIdOf(cert('URI:spiffe://cluster.local/ns/a/sa/b')), { ok: true, value: 'spiffe://cluster.local/ns/a/sa/b' });
  assert.equal(spiffeIdOf(cert('DNS:node1')).ok, false);
  assert.equal(spiffeIdOf(cert('URI:spiffe://cluster.local/ns/a/sa/b, URI:spiffe://cluster.local/ns/a/sa/c')).ok, false);
  assert.equal(spiffeIdOf(cert('URI:https://example.com/')).ok, false);
  assert.equal(spiffeIdOf(undefined).ok, false);
});

test('errors: statuses map to stable codes with what to check', () => {
  const where = { node: '10.1.0.2:15008', target: '10.0.0.7:80' };
  assert.equal(errorForStatus(403, 'denied by shop/deny-all', where).code, 'HBONE_FORBIDDEN');
  assert.match(errorForStatus(403, 'denied by shop/deny-all', where).message, /shop\/deny-all/);
  assert.equal(errorForStatus(503, undefined, where).code, 'HBONE_TARGET_REFUSED');
  assert.equal(errorForStatus(504, undefined, where).code, 'HBONE_TARGET_TIMEOUT');
  assert.equal(errorForStatus(400, undefined, where).code, 'HBONE_PROTOCOL');
});

test('errors: session failures say whether the network, our certificate or the peer is at fault', () => {
  const where = { node: '10.1.0.2:15008', source: 'spiffe://cluster.local/ns/a/sa/b' };
  const e = (code: string) => Object.assign(new Error(code), { code });
  assert.match(errorForSession(e('ECONNREFUSED'), where).message, /15008/);
  assert.equal(errorForSession(e('ETIMEDOUT'), where).code, 'HBONE_UNREACHABLE');
  assert.equal(errorForSession(e('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), where).code, 'HBONE_CERT_REJECTED');
  assert.equal(errorForSession(e('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), where).code, 'HBONE_BAD_PEER');
  assert.match(errorForSession(e('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE'), where).message, /no certificate for the workload/);
  const own = new HboneError('HBONE_BAD_PEER', 'x');
  assert.equal(errorForSession(own, where), own);
});
