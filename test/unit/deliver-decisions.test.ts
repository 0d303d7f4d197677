// The pure parts of delivery into meshed pods: which protocol a port declares, what explain judges
// (the same facts the proxy derives), the explain command's arguments, ProxyConfig validation, and
// the live-connection registry that a policy change re-judges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../agent/config/parse';
import { protocolForPort } from '../../agent/proxy/deliver';
import { localTarget } from '../../agent/proxy/inbound';
import { LiveConnections } from '../../agent/proxy/live-connections';
import { explain, formatExplain, parseExplainTarget, parseHeaderFlags } from '../../agent/node/explain';
import { explainParams, explainQueryOf } from '../../agent/node/explain-command';
import { PolicySet } from '../../agent/policy';
import { WorkloadStore } from '../../agent/state/store';

const BASE = `
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
status: { addresses: [{ type: InternalIP, address: 192.168.0.1 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: api, namespace: shop, labels: { app: api }, annotations: { weft.dev/cgroup: /sys/fs/cgroup/api } }
spec: { nodeName: n1, serviceAccountName: api }
status: { podIP: 10.0.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web }, annotations: { weft.dev/cgroup: /sys/fs/cgroup/web } }
spec: { nodeName: n1, serviceAccountName: web }
status: { podIP: 10.0.0.3 }
---
apiVersion: v1
kind: Pod
metadata: { name: old, namespace: legacy, annotations: { weft.dev/cgroup: /sys/fs/cgroup/old } }
spec: { nodeName: n1 }
status: { podIP: 10.0.0.4 }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: shop }
spec:
  selector: { app: api }
  ports:
  - { name: http-web, port: 80, targetPort: 8080 }
  - { name: tcp-db, port: 5432, targetPort: 5432 }
  - { name: grpc, port: 9090, targetPort: 9090, appProtocol: tcp }
  - { name: other, port: 7000, targetPort: 7000 }
`;

function load(extra = ''): { store: WorkloadStore; policies: PolicySet } {
  const parsed = parseConfig(BASE + extra, 'test.yaml');
  assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.error));
  return { store: new WorkloadStore(parsed.value), policies: new PolicySet(parsed.value.authorizationPolicies) };
}

test('protocolForPort: appProtocol first, then the port name, matched by the pod\'s targetPort; undeclared ports are sniffed', () => {
  const { store } = load();
  const api = store.pod('shop', 'api')!;
  assert.equal(protocolForPort(store, api, 8080), 'http1');
  assert.equal(protocolForPort(store, api, 5432), 'tcp');
  assert.equal(protocolForPort(store, api, 9090), 'tcp', 'appProtocol tcp wins over the grpc port name');
  assert.equal(protocolForPort(store, api, 7000), undefined);
  assert.equal(protocolForPort(store, api, 80), undefined, 'the Service port is not the pod\'s port');
  assert.equal(protocolForPort(store, store.pod('shop', 'web')!, 8080), undefined, 'no Service selects web');
});

const DENY_POST = `
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: { name: deny-post, namespace: shop }
spec:
  selector: { matchLabels: { app: api } }
  action: DENY
  rules: [{ to: [{ operation: { ports: ["8080"], methods: [POST] } }] }]
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: { name: allow-web, namespace: shop }
spec:
  selector: { matchLabels: { app: api } }
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/web] } }]
  - from: [{ source: { ipBlocks: [10.0.0.4/32] } }]
    to: [{ operation: { methods: [GET] } }]
`;

test('explain judges what the proxy judges: principals of meshed pods, no principal for clients outside the mesh, TCP-declared ports as TCP', () => {
  const { store, policies } = load(DENY_POST);
  const ask = (q: Parameters<typeof explain>[2]) => {
    const r = explain(store, policies, q);
    assert.ok(r.ok, !r.ok ? r.error : '');
    return r.value;
  };
  const post = ask({ src: 'shop/web', dst: 'shop/api', port: 8080, method: 'POST', path: '/x' });
  assert.deepEqual([post.decision, post.policy, post.rule, post.judgedAs], ['DENY', 'shop/deny-post', 0, 'http']);
  assert.match(post.reason, /DENY policy shop\/deny-post rule 0 matched: .*method POST/);
  assert.equal(ask({ src: 'shop/web', dst: 'shop/api', port: 8080, method: 'GET', path: '/x' }).decision, 'ALLOW');
  assert.equal(ask({ src: 'shop/web', dst: 'shop/api', port: 8080, method: 'GET', path: '/x' }).policy, 'shop/allow-web');
  // A pod outside the mesh is a plaintext client: matched by its address, never by a principal.
  const old = ask({ src: 'legacy/old', dst: 'shop/api', port: 8080, method: 'GET', path: '/' });
  assert.deepEqual([old.decision, old.policy, old.rule], ['ALLOW', 'shop/allow-web', 1]);
  assert.equal(ask({ src: '10.0.0.4', dst: 'shop/api', port: 8080, method: 'GET', path: '/' }).decision, 'ALLOW');
  const other = ask({ src: '10.9.9.9', dst: 'shop/api', port: 8080, method: 'GET', path: '/' });
  assert.equal(other.decision, 'DENY');
  assert.equal(other.policy, undefined, 'denied because no ALLOW rule matched: no deciding policy');
  // As plain TCP the ALLOW rule with methods is dropped (matches nothing).
  assert.equal(ask({ src: 'legacy/old', dst: 'shop/api', port: 8080 }).decision, 'DENY');
  // A port declared TCP is judged as TCP even when a request is asked about.
  const tcp = ask({ src: 'legacy/old', dst: 'shop/api', port: 5432, method: 'GET', path: '/' });
  assert.deepEqual([tcp.decision, tcp.judgedAs], ['DENY', 'tcp']);
  assert.match(tcp.reason, /declared TCP/);
  // The only numeric targetPort is the default port; here there are four.
  assert.ok(!explain(store, policies, { src: 'shop/web', dst: 'shop/api' }).ok);
});

const DENY_ADMIN = `
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: shop }
spec:
  selector: { matchLabels: { app: api } }
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin/*"] } }] }]
`;

test('explain judges the path the proxy judges: normalized by ProxyConfig pathNormalization (BASE unless set), a path it refuses is a DENY', () => {
  const ask = (extra: string, path: string) => {
    const { store, policies } = load(extra);
    const r = explain(store, policies, { src: 'shop/web', dst: 'shop/api', port: 8080, method: 'GET', path });
    assert.ok(r.ok, !r.ok ? r.error : '');
    return r.value;
  };
  const sneaky = ask(DENY_ADMIN, '/x/../%61dmin/keys');
  assert.deepEqual([sneaky.decision, sneaky.policy], ['DENY', 'shop/deny-admin']);
  assert.match(sneaky.reason, /path judged as \/admin\/keys: path normalization BASE/);
  assert.equal(ask(DENY_ADMIN, '/admin/keys').reason.includes('judged as'), false, 'no note when the path is already normal');
  const none = ask(`${DENY_ADMIN}---\napiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: default }\nspec: { pathNormalization: { normalization: NONE } }\n`, '/x/../admin/keys');
  assert.equal(none.decision, 'ALLOW', 'with NONE the proxy, and so explain, judges the path as sent');
  const nul = ask(DENY_ADMIN, '/a%00');
  assert.deepEqual([nul.decision, nul.judgedAs], ['DENY', 'http']);
  assert.match(nul.reason, /400 before any policy/);
});

test('explain: a destination outside the mesh has no policy; STRICT refuses plaintext clients; unknown pods are errors', () => {
  const { store, policies } = load(`${DENY_POST}
---
apiVersion: security.weft.dev/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
`);
  const r = explain(store, policies, { src: 'shop/web', dst: 'legacy/old', port: 80 });
  assert.ok(r.ok && r.value.decision === 'ALLOW' && /not in the mesh/.test(r.value.reason));
  const strict = explain(store, policies, { src: 'legacy/old', dst: 'shop/api', port: 8080, method: 'GET', path: '/' });
  assert.ok(strict.ok && strict.value.decision === 'DENY' && /STRICT/.test(strict.value.reason));
  assert.equal(explain(store, policies, { src: 'shop/nobody', dst: 'shop/api', port: 1 }).ok, false);
  const missing = explain(store, policies, { src: 'shop/web', dst: 'shop/ghost', port: 1 });
  assert.ok(!missing.ok && /no pod shop\/ghost/.test(missing.error));
});

test('formatExplain: ALLOW or DENY first, then the deciding policy and rule or "no policy", then the reason', () => {
  assert.equal(formatExplain({ decision: 'DENY', policy: 'shop/p', rule: 2, reason: 'because', judgedAs: 'http' }), 'DENY\npolicy shop/p rule 2\nreason: because\n');
  assert.equal(formatExplain({ decision: 'ALLOW', reason: 'no policy applies', judgedAs: 'tcp' }), 'ALLOW\nno policy\nreason: no policy applies\n');
});

test('explain arguments: SRC DST[:PORT] [METHOD PATH], headers NAME=VALUE; bad ones are refused with what to type', () => {
  assert.deepEqual(parseExplainTarget(['shop/web', 'shop/api:8080', 'get', '/x']), { ok: true, value: { src: 'shop/web', dst: 'shop/api', port: 8080, method: 'GET', path: '/x' } });
  assert.deepEqual(parseExplainTarget(['10.0.0.1', 'shop/api']), { ok: true, value: { src: '10.0.0.1', dst: 'shop/api' } });
  for (const bad of [[], ['shop/web'], ['a', 'shop/api:0'], ['a', 'shop/api:99999'], ['a', 'shop/api', 'GET'], ['a', 'shop/api', 'GET', 'x'], ['a', 'b', 'GET', '/', 'extra']]) {
    assert.equal(parseExplainTarget(bad).ok, false, JSON.stringify(bad));
  }
  assert.deepEqual(parseHeaderFlags(['X-User=alice', 'a=b=c']), { ok: true, value: { 'x-user': 'alice', a: 'b=c' } });
  assert.equal(parseHeaderFlags(['novalue']).ok, false);
  const q = { src: 'shop/web', dst: 'shop/api', port: 8080, method: 'GET', path: '/x', host: 'api', headers: { 'x-a': '1' } };
  assert.deepEqual(explainQueryOf(explainParams(q)), { ok: true, value: q }, 'the admin API query round-trips');
  assert.equal(explainQueryOf(new URLSearchParams('dst=a/b')).ok, false);
  assert.equal(explainQueryOf(new URLSearchParams('src=a/b&dst=a/c&port=70000')).ok, false);
});

test('ProxyConfig: limits by their names, defaults for the rest; unknown and bad fields are refused by field', () => {
  const ok = parseConfig('apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: default }\nspec: { protocolDetectionTimeoutMs: 50, http: { maxHeaderBytes: 8192, maxRequestBodyBytes: 1048576 } }\n', 'p.yaml');
  assert.ok(ok.ok);
  assert.equal(ok.value.proxyConfig?.protocolDetectionTimeoutMs, 50);
  assert.equal(ok.value.proxyConfig?.http.maxHeaderBytes, 8192);
  assert.equal(ok.value.proxyConfig?.http.maxRequestBodyBytes, 1048576);
  assert.equal(ok.value.proxyConfig?.http.maxConcurrentStreams, 100, 'unset fields keep their defaults');
  const bad = parseConfig('apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: other }\nspec: { protocolDetectionTimeoutMs: 0, http: { maxHeaderByte: 1, maxConcurrentStreams: -1 } }\n', 'p.yaml');
  assert.ok(!bad.ok);
  const fields = bad.error.map((e) => `${e.field}: ${e.message}`);
  assert.ok(fields.some((f) => f.startsWith('metadata.name')), fields.join('\n'));
  assert.ok(fields.some((f) => f.startsWith('spec.protocolDetectionTimeoutMs')), fields.join('\n'));
  assert.ok(fields.some((f) => /spec\.http\.maxHeaderByte: unknown field; did you mean "maxHeaderBytes"/.test(f)), fields.join('\n'));
  assert.ok(fields.some((f) => f.startsWith('spec.http.maxConcurrentStreams')), fields.join('\n'));
});

test('LiveConnections: a re-check closes exactly the connections the new policy denies, with its reason', () => {
  const live = new LiveConnections<{ port: number }>();
  const closed: string[] = [];
  const conns = [80, 443, 5432].map((port) => ({ facts: { port }, close: (why: string) => { closed.push(`${port} ${why}`); } }));
  for (const c of conns) live.add(c);
  assert.equal(live.recheck((f) => (f.port === 5432 ? 'DENY policy shop/db rule 0' : undefined)), 1);
  assert.deepEqual(closed, ['5432 DENY policy shop/db rule 0']);
  assert.equal(live.size, 2);
  live.remove(conns[0]!);
  assert.equal(live.recheck(() => 'everything'), 1);
  assert.deepEqual(closed.slice(1), ['443 everything']);
  assert.equal(live.size, 0);
});

test('localTarget: a pod of this node is a target in the mesh or out of it (a tunnel opened just before its namespace left the mesh still reaches it); other nodes\' pods and unknown addresses are not', () => {
  const { store } = load();
  const t = (ip: string, node = 'n1') => { const r = localTarget(ip, node, store); return 'pod' in r ? `${r.pod.namespace}/${r.pod.name}` : r.reason; };
  assert.equal(t('10.0.0.2'), 'shop/api');
  assert.equal(t('10.0.0.4'), 'legacy/old', 'a pod out of the mesh on this node');
  assert.equal(t('10.0.0.2', 'n2'), 'pod shop/api runs on n1, not on this node (n2)');
  assert.equal(t('10.0.0.99'), '10.0.0.99 is not a known pod');
});
