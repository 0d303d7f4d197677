// The admin API over real HTTP on loopback: /explain answers with the proxy's decision, a bad
// question is a 400 that says what to fix, and before the first snapshot it says so (503); a
// destination whose namespace's policies this node's agent does not receive is sent to its node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { adminRoutes, healthRoutes } from '../../agent/node/admin';
import { serveJson } from '../../agent/node/http-endpoints';
import { parseConfig } from '../../agent/config/parse';
import { PolicySet } from '../../agent/policy';
import { WorkloadStore } from '../../agent/state/store';

const CONFIG = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { weft.dev/mesh: enabled } }
---
apiVersion: v1
kind: Pod
metadata: { name: api, namespace: shop, labels: { app: api }, annotations: { weft.dev/cgroup: /sys/fs/cgroup/api } }
spec: { nodeName: n1, serviceAccountName: api }
status: { podIP: 10.0.0.2 }
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: { name: deny-delete, namespace: shop }
spec: { action: DENY, rules: [{ to: [{ operation: { methods: [DELETE] } }] }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: pay, labels: { weft.dev/mesh: enabled } }
---
apiVersion: v1
kind: Pod
metadata: { name: ledger, namespace: pay, labels: { app: ledger }, annotations: { weft.dev/cgroup: /sys/fs/cgroup/ledger } }
spec: { nodeName: n2, serviceAccountName: ledger }
status: { podIP: 10.0.1.2 }
`;

test('admin /explain: answers, refuses bad questions with 400, and says when there is no state yet (503)', async () => {
  const parsed = parseConfig(CONFIG, 'admin.yaml');
  assert.ok(parsed.ok);
  let store: WorkloadStore | undefined;
  const policies = new PolicySet(parsed.value.authorizationPolicies);
  const server = await serveJson('127.0.0.1', 0, { ...adminRoutes({ node: 'n1', store: () => store, policies: () => policies, workloads: () => [], certs: () => [], redirect: () => ({}), services: () => [] }), ...healthRoutes(() => store !== undefined) });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const early = await fetch(`${base}/explain?src=10.0.0.9&dst=shop/api&port=80`);
    assert.equal(early.status, 503);
    assert.match(((await early.json()) as { error: string }).error, /no state/);
    assert.equal((await fetch(`${base}/healthz/ready`)).status, 503);
    store = new WorkloadStore(parsed.value);
    const deny = await fetch(`${base}/explain?src=10.0.0.9&dst=shop/api&port=80&method=DELETE&path=/x`);
    assert.equal(deny.status, 200);
    assert.deepEqual(await deny.json(), { decision: 'DENY', policy: 'shop/deny-delete', rule: 0, reason: 'DENY policy shop/deny-delete rule 0 matched: method DELETE', judgedAs: 'http' });
    for (const [query, message] of [['dst=shop/api', /needs \?src/], ['src=a&dst=shop/api&port=0', /port must be/], ['src=a&dst=shop/nope&port=80', /no pod shop\/nope/], ['src=a&dst=shop/api&port=80&header=bad', /NAME=VALUE/]] as const) {
      const r = await fetch(`${base}/explain?${query}`);
      assert.equal(r.status, 400, query);
      assert.match(((await r.json()) as { error: string }).error, message);
    }
    // pay has no pod on n1, so this agent (fed n1's projection) holds none of pay's policies: it
    // says where to ask instead of answering ALLOW from policies it never received.
    const remote = await fetch(`${base}/explain?src=shop/api&dst=pay/ledger&port=80`);
    assert.equal(remote.status, 400);
    assert.match(((await remote.json()) as { error: string }).error, /pay\/ledger runs on node n2 .* Ask the agent on n2, or answer offline with --config/);
    assert.equal((await fetch(`${base}/healthz/ready`)).status, 200);
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
