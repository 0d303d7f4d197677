import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptySnapshot, type Snapshot } from '../../agent/config/objects';
import { authorizationPolicyInfo, kindFragment, peerAuthenticationInfo, type CustomObject } from '../../agent/controlplane/discovery-kube-convert';
import type { KubeObjectsView } from '../../agent/controlplane/kube-source';
import type { Condition } from '../../agent/controlplane/status-conditions';
import { planStatus, type StatusPlan, type StatusWrite } from '../../agent/controlplane/status-plan';

/**
 * Status of AuthorizationPolicy, PeerAuthentication and ProxyConfig (status-security.ts through
 * status-plan.ts): one `Accepted` condition with observedGeneration, False/Invalid with the
 * conversion's field-level error, and an Event for each invalid object. The views are built as the
 * kube source builds them: each object through the real conversion, an invalid one out of the
 * snapshot (its last valid version in it, when it had one) and in `invalid` with the error.
 */

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const T0 = '2030-01-01T00:00:00Z';
const T1 = '2030-01-01T00:05:00Z';

function authorizationPolicy(name: string, spec: Obj, opts: { generation?: number; rv?: string; status?: Obj; namespace?: string } = {}): Obj {
  return {
    apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy',
    metadata: { name, namespace: opts.namespace ?? 'shop', uid: `uid-${name}`, generation: opts.generation ?? 1, resourceVersion: opts.rv ?? '1' },
    spec, ...(opts.status ? { status: opts.status } : {}),
  };
}

function peerAuthentication(name: string, spec: Obj, opts: { generation?: number; rv?: string; status?: Obj } = {}): Obj {
  return {
    apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication',
    metadata: { name, namespace: 'shop', uid: `uid-${name}`, generation: opts.generation ?? 1, resourceVersion: opts.rv ?? '1' },
    spec, ...(opts.status ? { status: opts.status } : {}),
  };
}

function proxyConfig(name: string, spec: Obj, opts: { generation?: number; rv?: string; status?: Obj } = {}): Obj {
  return {
    apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig',
    metadata: { name, uid: `uid-${name}`, generation: opts.generation ?? 1, resourceVersion: opts.rv ?? '1' },
    spec, ...(opts.status ? { status: opts.status } : {}),
  };
}

const ALLOW_FRONTEND = { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] };
/** The CRD's pattern takes it (address characters); the conversion refuses it: 999 is no octet. */
const BAD_IP_BLOCK = { selector: { matchLabels: { app: 'web' } }, action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['999.0.0.1'] } }] }] };
/** Written before the CRD refused port-level modes (or with strict validation off): the conversion refuses it. */
const PORT_LEVEL_STRICT = { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 8080: { mode: 'STRICT' } } };
/** The CRD's pattern takes it (http://, a host part); the URL does not parse. */
const BAD_OTLP = { tracing: { otlpEndpoint: 'http://[otel-collector' } };

function convert(obj: Obj): { ok: true; add: (s: Snapshot) => void } | { ok: false; error: string } {
  const o = obj as CustomObject;
  if (obj.kind === 'AuthorizationPolicy') {
    const r = authorizationPolicyInfo(o);
    return r.ok ? { ok: true, add: (s) => s.authorizationPolicies.push(r.value) } : r;
  }
  if (obj.kind === 'PeerAuthentication') {
    const r = peerAuthenticationInfo(o);
    return r.ok ? { ok: true, add: (s) => s.peerAuthentications.push(r.value) } : r;
  }
  const r = kindFragment(obj.kind, o);
  return r.ok ? { ok: true, add: (s) => Object.assign(s, r.value) } : r;
}

/** What the kube source hands the writer after one build. */
function view(objects: Obj[], lastValid: Obj[] = []): KubeObjectsView {
  const snapshot: Snapshot = emptySnapshot();
  const byKind = new Map<string, CustomObject[]>();
  const invalid = new Map<string, string>();
  for (const obj of objects) {
    byKind.set(obj.kind, [...(byKind.get(obj.kind) ?? []), obj as CustomObject]);
    const converted = convert(obj);
    if (converted.ok) { converted.add(snapshot); continue; }
    const id = `${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    invalid.set(id, converted.error);
    const previous = lastValid.find((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}` === id);
    if (previous !== undefined) {
      const good = convert(previous);
      assert.ok(good.ok, 'the last valid version converts');
      good.add(snapshot);
    }
  }
  return { snapshot, objects: byKind, invalid };
}

function writeFor(plan: StatusPlan, name: string): StatusWrite {
  const write = plan.writes.find((w) => w.name === name);
  assert.ok(write, `a write for ${name}: ${JSON.stringify(plan.writes.map((w) => `${w.kind.kind} ${w.name}`))}`);
  return write;
}

function accepted(write: StatusWrite): Condition {
  const list = write.body.status.conditions as Condition[];
  const found = list.filter((c) => c.type === 'Accepted');
  assert.equal(found.length, 1, JSON.stringify(list));
  return found[0]!;
}

/** The object as the API server has it after the patch. */
function withStatus(obj: Obj, write: StatusWrite, rv: string): Obj {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: rv }, status: { ...(obj.status ?? {}), ...write.body.status } };
}

test('a valid AuthorizationPolicy gets Accepted True (reason Accepted) with its observedGeneration, patched at the version it was read; no Event', () => {
  const ap = authorizationPolicy('allow-frontend', ALLOW_FRONTEND, { generation: 3, rv: '41' });
  const plan = planStatus(view([ap]), T0);
  const write = writeFor(plan, 'allow-frontend');
  assert.deepEqual([write.kind.kind, write.kind.plural, write.kind.group, write.kind.namespaced, write.namespace], ['AuthorizationPolicy', 'authorizationpolicies', 'security.weft.dev', true, 'shop']);
  assert.deepEqual(write.body.metadata, { resourceVersion: '41' });
  const c = accepted(write);
  assert.deepEqual({ ...c, message: '' }, { type: 'Accepted', status: 'True', reason: 'Accepted', message: '', observedGeneration: 3, lastTransitionTime: T0 });
  assert.equal(c.message, 'in force: ALLOW with 1 rule on the workloads labelled app=web in namespace shop');
  assert.deepEqual(plan.invalid, []);
  assert.ok(plan.seen.has('AuthorizationPolicy shop/allow-frontend'));
});

test('an AuthorizationPolicy the schema lets through but the conversion refuses: Accepted False, reason Invalid, the message naming the field; an Event; the others stay Accepted', () => {
  const good = authorizationPolicy('allow-frontend', ALLOW_FRONTEND);
  const bad = authorizationPolicy('deny-bad-ip', BAD_IP_BLOCK, { generation: 2, rv: '7' });
  const plan = planStatus(view([good, bad]), T0);
  const c = accepted(writeFor(plan, 'deny-bad-ip'));
  assert.deepEqual([c.status, c.reason, c.observedGeneration], ['False', 'Invalid', 2]);
  assert.match(c.message, /^spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: .*999\.0\.0\.1/);
  assert.match(c.message, /\(it is not in force until it is fixed\)$/);
  assert.equal(accepted(writeFor(plan, 'allow-frontend')).status, 'True');
  assert.equal(plan.invalid.length, 1);
  const [event] = plan.invalid;
  assert.deepEqual([event!.kind.kind, event!.namespace, event!.name, event!.uid, event!.generation, event!.resourceVersion], ['AuthorizationPolicy', 'shop', 'deny-bad-ip', 'uid-deny-bad-ip', 2, '7']);
  assert.equal(event!.message, c.message, 'the Event says what the condition says');
});

test('an invalid edit of a policy that was valid: its last valid version stays in force, and the condition says so; fixing it turns Accepted True with the new generation and a new transition time', () => {
  const v1 = authorizationPolicy('allow-frontend', ALLOW_FRONTEND, { generation: 1, rv: '10' });
  const first = writeFor(planStatus(view([v1]), T0), 'allow-frontend');
  const stored1 = withStatus(v1, first, '11');

  const v2 = { ...authorizationPolicy('allow-frontend', BAD_IP_BLOCK, { generation: 2, rv: '12' }), status: stored1.status };
  const broken = planStatus(view([v2], [v1]), T1);
  const c2 = accepted(writeFor(broken, 'allow-frontend'));
  assert.deepEqual([c2.status, c2.reason, c2.observedGeneration, c2.lastTransitionTime], ['False', 'Invalid', 2, T1]);
  assert.match(c2.message, /ipBlocks\[0\].*\(its last valid version stays in force until it is fixed\)$/);
  const stored2 = withStatus(v2, writeFor(broken, 'allow-frontend'), '13');

  const v3 = { ...authorizationPolicy('allow-frontend', ALLOW_FRONTEND, { generation: 3, rv: '14' }), status: stored2.status };
  const fixed = planStatus(view([v3]), '2030-01-01T00:09:00Z');
  const c3 = accepted(writeFor(fixed, 'allow-frontend'));
  assert.deepEqual([c3.status, c3.reason, c3.observedGeneration, c3.lastTransitionTime], ['True', 'Accepted', 3, '2030-01-01T00:09:00Z']);
  assert.deepEqual(fixed.invalid, []);
});

test('no write when the status is already right (whatever the key order); another writer\'s condition types are kept; lastTransitionTime kept while the status stays', () => {
  const ap = authorizationPolicy('allow-frontend', ALLOW_FRONTEND, { generation: 1 });
  const first = writeFor(planStatus(view([ap]), T0), 'allow-frontend');
  const stored = withStatus(ap, first, '2');
  const reordered = { ...stored, status: { conditions: [Object.fromEntries(Object.entries(stored.status.conditions[0]).reverse())] } };
  assert.deepEqual(planStatus(view([reordered]), T1).writes, [], 'nothing to write');

  const withOther = { ...stored, status: { conditions: [{ type: 'Audited', status: 'True', reason: 'Reviewed', message: 'by the security team', lastTransitionTime: T0 }, ...stored.status.conditions] } };
  assert.deepEqual(planStatus(view([withOther]), T1).writes, [], 'a condition of another type is not ours to write');
  const regenerated = { ...withOther, metadata: { ...stored.metadata, generation: 2 } };
  const write = writeFor(planStatus(view([regenerated]), T1), 'allow-frontend');
  const list = write.body.status.conditions as Condition[];
  assert.deepEqual(list.map((c) => c.type), ['Audited', 'Accepted'], 'the other condition kept');
  assert.deepEqual([list[1]!.observedGeneration, list[1]!.lastTransitionTime], [2, T0], 'a new generation, the same status: the transition time stays');
});

test('an AuthorizationPolicy in the root namespace without a selector is reported as applying to every namespace', () => {
  const ap = authorizationPolicy('deny-all', { action: 'DENY', rules: [{}] }, { namespace: 'weft-system' });
  const c = accepted(writeFor(planStatus(view([ap]), T0), 'deny-all'));
  assert.equal(c.message, 'in force: DENY with 1 rule on every workload of every namespace (weft-system is the root namespace)');
});

test('PeerAuthentication: a valid one is Accepted True naming its mode; one the conversion refuses is Invalid naming the field, with an Event; a last valid STRICT stays in force', () => {
  const strict = peerAuthentication('strict', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' } }, { generation: 1 });
  const ok = accepted(writeFor(planStatus(view([strict]), T0), 'strict'));
  assert.deepEqual([ok.status, ok.reason, ok.observedGeneration, ok.message], ['True', 'Accepted', 1, 'in force: mTLS mode STRICT on the workloads labelled app=web in namespace shop']);

  const edited = peerAuthentication('strict', PORT_LEVEL_STRICT, { generation: 2, rv: '5' });
  const plan = planStatus(view([edited], [strict]), T1);
  const bad = accepted(writeFor(plan, 'strict'));
  assert.deepEqual([bad.status, bad.reason, bad.observedGeneration], ['False', 'Invalid', 2]);
  assert.match(bad.message, /^spec\.portLevelMtls\[8080\]\.mode: STRICT for port 8080 is not enforced by Weft/);
  assert.match(bad.message, /\(its last valid version stays in force until it is fixed\)$/);
  assert.deepEqual(plan.invalid.map((o) => `${o.kind.kind} ${o.namespace}/${o.name} ${o.generation}`), ['PeerAuthentication shop/strict 2']);

  const inherit = peerAuthentication('inherit', {});
  assert.match(accepted(writeFor(planStatus(view([inherit]), T0), 'inherit')).message, /^in force: mTLS mode UNSET \(inherited from the namespace or the mesh\) on every workload of namespace shop$/);
});

test('ProxyConfig: `default` is Accepted True on the cluster-scoped kind; an edit the conversion refuses is Invalid naming the field while the last valid one stays in force', () => {
  const v1 = proxyConfig('default', { accessLog: { level: 'errors' } }, { generation: 1 });
  const first = writeFor(planStatus(view([v1]), T0), 'default');
  assert.deepEqual([first.kind.kind, first.kind.plural, first.kind.group, first.kind.namespaced, first.namespace], ['ProxyConfig', 'proxyconfigs', 'config.weft.dev', false, '']);
  const c1 = accepted(first);
  assert.deepEqual([c1.status, c1.reason, c1.observedGeneration, c1.message], ['True', 'Accepted', 1, 'in force on every node proxy']);

  const v2 = proxyConfig('default', BAD_OTLP, { generation: 2 });
  const plan = planStatus(view([v2], [v1]), T1);
  const c2 = accepted(writeFor(plan, 'default'));
  assert.deepEqual([c2.status, c2.reason, c2.observedGeneration], ['False', 'Invalid', 2]);
  assert.match(c2.message, /^spec\.tracing\.otlpEndpoint: .*\(its last valid version stays in force until it is fixed\)$/);
  assert.deepEqual(plan.invalid.map((o) => [o.kind.kind, o.namespace, o.name, o.generation]), [['ProxyConfig', '', 'default', 2]]);
});

test('a ProxyConfig not named `default` is not accepted: the message says only `default` is read, and `default` is unaffected', () => {
  const mesh = proxyConfig('mesh', { accessLog: { level: 'denials' } }, { generation: 4 });
  const def = proxyConfig('default', { accessLog: { level: 'errors' } });
  const v = view([def, mesh]);
  assert.equal(v.snapshot.proxyConfig?.accessLog?.level, 'errors', 'the snapshot reads only `default`');
  const plan = planStatus(v, T0);
  const c = accepted(writeFor(plan, 'mesh'));
  assert.deepEqual([c.status, c.reason, c.observedGeneration], ['False', 'Invalid', 4]);
  assert.match(c.message, /^metadata\.name: must be "default"/);
  assert.match(c.message, /only the ProxyConfig named "default" is read: this one is ignored/);
  assert.doesNotMatch(c.message, /last valid version/, 'the snapshot\'s ProxyConfig is `default`\'s, not this one\'s');
  assert.equal(accepted(writeFor(plan, 'default')).status, 'True');
  assert.deepEqual(plan.invalid.map((o) => [o.name, o.message]), [['mesh', c.message]]);
});

test('one verdict: over a mix of objects, exactly those the conversion refuses are reported invalid (condition False and an Event), every other one Accepted True', () => {
  const objects = [
    authorizationPolicy('a1', ALLOW_FRONTEND), authorizationPolicy('a2', BAD_IP_BLOCK),
    authorizationPolicy('a3', { action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/api/{*}/x/{**}/y'] } }] }] }),
    authorizationPolicy('a4', { action: 'AUDIT', rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.1/33'] }] }] }),
    peerAuthentication('p1', { mtls: { mode: 'STRICT' } }), peerAuthentication('p2', PORT_LEVEL_STRICT),
    proxyConfig('default', BAD_OTLP), proxyConfig('other', {}),
  ];
  const plan = planStatus(view(objects), T0);
  const refused = new Set(objects.filter((o) => !convert(o).ok).map((o) => o.metadata.name as string));
  assert.ok(refused.has('a2') && refused.has('p2') && refused.has('default') && refused.has('other') && !refused.has('a1') && !refused.has('p1'), [...refused].join(','));
  assert.deepEqual(new Set(plan.invalid.map((o) => o.name)), refused);
  for (const o of objects) {
    const c = accepted(writeFor(plan, o.metadata.name));
    assert.equal(c.status, refused.has(o.metadata.name) ? 'False' : 'True', `${o.kind} ${o.metadata.name}: ${c.message}`);
    assert.equal(c.observedGeneration, 1);
  }
});
