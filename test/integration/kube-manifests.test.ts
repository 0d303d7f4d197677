/**
 * Weft's install manifests (daemonset/*.yaml, listed in daemonset/kustomization.yaml; monitoring/ is
 * not part of `kubectl apply -k daemonset/`) against a real kube-apiserver with its controller manager (test/support/
 * kube-cluster.ts): every object is accepted by a server-side apply, the CRDs become Established
 * with the subresources and printer columns they declare, and the TrafficPolicy, AuthorizationPolicy,
 * PeerAuthentication and ProxyConfig schemas make the API server itself refuse malformed policies, its error
 * naming the field, while Istio's documented policies are accepted. Uninstalling removes
 * everything, the weft-system namespace through the namespace controller.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../agent/config/parse';
import { startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const DAEMONSET = join(ROOT, 'daemonset');
/** Bounded polls for what controllers do asynchronously (CRD establishment, namespace deletion). */
const WAIT_MS = 60_000;

interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
}

/** kustomization.yaml lists the others for `kubectl apply -k`; it is not an object itself. */
const KUSTOMIZATION = 'kustomization.yaml';
const files = readdirSync(DAEMONSET).filter((f) => (f.endsWith('.yaml') || f.endsWith('.yml') || f.endsWith('.json')) && f !== KUSTOMIZATION).sort();
const objects = (file: string): ManifestObject[] =>
  parseAllDocuments(readFileSync(join(DAEMONSET, file), 'utf8')).map((d) => d.toJS() as ManifestObject | null).filter((o): o is ManifestObject => o !== null);
/** Install order as an operator would run it: the namespace and the CRDs before what lives in them. */
const ORDER = ['namespace.yaml', 'crds.yaml', 'rbac.yaml'];
const ordered = [...ORDER.filter((f) => files.includes(f)), ...files.filter((f) => !ORDER.includes(f))];

let cluster: KubeCluster;

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await cluster.kubectl(args, stdin);
  if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}`);
    await sleep(200);
  }
}

before(async () => {
  cluster = await startKubeCluster({ name: 'crd' });
  process.stderr.write(`kube-manifests: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
});

after(async () => {
  await cluster?.close();
});

test('daemonset/ holds the install manifests (the monitoring/ folder is not among them)', () => {
  assert.ok(ORDER.every((f) => files.includes(f)), `expected ${ORDER.join(', ')} in daemonset/, found ${files.join(', ')}`);
  assert.ok(!files.some((f) => f.includes('monitoring')));
});

test('every manifest in daemonset/ is accepted by the real API server (kubectl apply --server-side), and every object it declares exists afterwards', async () => {
  for (const file of ordered) {
    const out = await kubectl(['apply', '--server-side', '--field-manager=weft-install', '-f', join(DAEMONSET, file)]);
    assert.match(out, /serverside-applied/, `${file}: ${out}`);
    if (file === 'crds.yaml') {
      // Objects of a new kind can be created once the CRD is Established.
      await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(DAEMONSET, file)]);
    }
  }
  const declared = ordered.flatMap(objects);
  assert.ok(declared.length >= 10, `only ${declared.length} objects in daemonset/`);
  for (const obj of declared) {
    const group = obj.apiVersion.includes('/') ? obj.apiVersion.split('/')[0] : '';
    const resource = `${obj.kind.toLowerCase()}${group ? `.${group}` : ''}`;
    const args = ['get', resource, obj.metadata.name, '-o', 'jsonpath={.metadata.name}'];
    if (obj.metadata.namespace) args.push('-n', obj.metadata.namespace);
    assert.equal(await kubectl(args), obj.metadata.name, `${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
  }
  // Applying the same manifests again changes nothing and is accepted (an upgrade with no change).
  const again = await kubectl(['apply', '--server-side', '--field-manager=weft-install', '-f', join(DAEMONSET, 'crds.yaml'), '-f', join(DAEMONSET, 'rbac.yaml')]);
  assert.match(again, /serverside-applied/);
});

/** `Kind namespace/name` of every object in these manifests. */
const idOf = (o: ManifestObject): string => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** `kubectl apply -k daemonset/`, then every object of every manifest must exist. */
async function applyKustomization(): Promise<void> {
  const out = await kubectl(['apply', '-k', DAEMONSET]);
  for (const obj of ordered.flatMap(objects)) {
    const group = obj.apiVersion.includes('/') ? obj.apiVersion.split('/')[0] : '';
    const resource = `${obj.kind.toLowerCase()}${group ? `.${group}` : ''}`;
    const args = ['get', resource, obj.metadata.name, '-o', 'jsonpath={.metadata.name}'];
    if (obj.metadata.namespace) args.push('-n', obj.metadata.namespace);
    assert.equal(await kubectl(args), obj.metadata.name, `${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name} after apply -k:\n${out}`);
  }
}

test('daemonset/kustomization.yaml lists every install manifest: `kubectl kustomize daemonset/` renders exactly the objects of the files, unchanged', async () => {
  const listed = (parseAllDocuments(readFileSync(join(DAEMONSET, KUSTOMIZATION), 'utf8'))[0]!.toJS() as { resources: string[] }).resources;
  assert.deepEqual([...listed].sort(), files, `${KUSTOMIZATION} resources`);
  const rendered = parseAllDocuments(await kubectl(['kustomize', DAEMONSET])).map((d) => d.toJS() as ManifestObject).filter((o) => o !== null);
  const declared = ordered.flatMap(objects);
  assert.deepEqual(rendered.map(idOf).sort(), declared.map(idOf).sort());
  const byId = new Map(declared.map((o) => [idOf(o), o]));
  for (const o of rendered) assert.deepEqual(o, byId.get(idOf(o)), `${idOf(o)} rendered as written (no prefix, label or patch)`);
});

test('`kubectl apply -k daemonset/` installs namespace, CRDs, RBAC, control plane and agents in one command (here over the server-side apply above, as an upgrade would): every object exists afterwards, and applying it again is accepted', async () => {
  await applyKustomization();
  const again = await kubectl(['apply', '-k', DAEMONSET]);
  assert.ok(!/created/.test(again), `a second apply -k created something: ${again}`);
});

test('the CRDs are Established with the status subresource and printer columns they declare', async () => {
  const crds = objects('crds.yaml');
  assert.ok(crds.length >= 3);
  for (const crd of crds) {
    const live = JSON.parse(await kubectl(['get', 'crd', crd.metadata.name, '-o', 'json'])) as {
      spec: { versions: { name: string; subresources?: { status?: unknown }; additionalPrinterColumns?: { name: string }[] }[] };
      status: { conditions: { type: string; status: string }[] };
    };
    assert.ok(live.status.conditions.some((c) => c.type === 'Established' && c.status === 'True'), `${crd.metadata.name} not Established`);
    const declared = (crd.spec as { versions: { name: string; subresources?: { status?: unknown }; additionalPrinterColumns?: { name: string }[] }[] }).versions;
    for (const version of declared) {
      const served = live.spec.versions.find((v) => v.name === version.name);
      assert.ok(served, `${crd.metadata.name} ${version.name} not served`);
      assert.equal(served.subresources?.status !== undefined, version.subresources?.status !== undefined, `${crd.metadata.name} status subresource`);
      assert.deepEqual((served.additionalPrinterColumns ?? []).map((c) => c.name), (version.additionalPrinterColumns ?? []).map((c) => c.name));
    }
  }
  // A printer column is what `kubectl get` shows.
  await kubectl(['create', 'namespace', 'columns']);
  await kubectl(['apply', '-f', '-'], trafficPolicy('columns', 'ok', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] }));
  const table = await kubectl(['get', 'trafficpolicies', '-n', 'columns']);
  assert.match(table.split('\n')[0]!, /NAME\s+ACCEPTED\s+REASON\s+AGE/);
});

function trafficPolicy(namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy', metadata: { name, namespace }, spec });
}

const target = [{ group: '', kind: 'Service', name: 'web' }];

/**
 * Malformed TrafficPolicies: the spec, the field the refusal must name, and what the API server's
 * validation says about it (the `kubectl apply` message, field path first).
 */
const MALFORMED: { name: string; spec: Record<string, unknown>; field: string; error: RegExp }[] = [
  { name: 'missing-targetrefs', spec: { loadBalancer: { simple: 'ROUND_ROBIN' } }, field: 'spec.targetRefs', error: /spec\.targetRefs: Required value/ },
  { name: 'empty-targetrefs', spec: { targetRefs: [] }, field: 'spec.targetRefs', error: /spec\.targetRefs: Invalid value: .*should have at least 1 items/ },
  { name: 'targetref-without-name', spec: { targetRefs: [{ group: '', kind: 'Service' }] }, field: 'spec.targetRefs[0].name', error: /spec\.targetRefs\[0\]\.name: Required value/ },
  { name: 'targetref-to-deployment', spec: { targetRefs: [{ group: 'apps', kind: 'Deployment', name: 'web' }] }, field: 'spec.targetRefs[0].kind', error: /spec\.targetRefs\[0\]\.kind: Unsupported value: "Deployment"/ },
  { name: 'unknown-lb', spec: { targetRefs: target, loadBalancer: { simple: 'FASTEST' } }, field: 'spec.loadBalancer.simple', error: /spec\.loadBalancer\.simple: Unsupported value: "FASTEST"/ },
  { name: 'string-count', spec: { targetRefs: target, connectionPool: { tcp: { maxConnections: 'ten' } } }, field: 'spec.connectionPool.tcp.maxConnections', error: /spec\.connectionPool\.tcp\.maxConnections: Invalid value: "string": spec\.connectionPool\.tcp\.maxConnections in body must be of type integer/ },
  { name: 'zero-connections', spec: { targetRefs: target, connectionPool: { tcp: { maxConnections: 0 } } }, field: 'spec.connectionPool.tcp.maxConnections', error: /spec\.connectionPool\.tcp\.maxConnections: Invalid value: 0: .*should be greater than or equal to 1/ },
  { name: 'bad-duration', spec: { targetRefs: target, outlierDetection: { interval: 'ten seconds' } }, field: 'spec.outlierDetection.interval', error: /spec\.outlierDetection\.interval: Invalid value: "ten seconds": .*should match/ },
  { name: 'percent-over-100', spec: { targetRefs: target, outlierDetection: { maxEjectionPercent: 150 } }, field: 'spec.outlierDetection.maxEjectionPercent', error: /spec\.outlierDetection\.maxEjectionPercent: Invalid value: 150: .*should be less than or equal to 100/ },
  { name: 'abort-status-700', spec: { targetRefs: target, fault: { abort: { httpStatus: 700, percentage: { value: 10 } } } }, field: 'spec.fault.abort.httpStatus', error: /spec\.fault\.abort\.httpStatus: Invalid value: 700/ },
  { name: 'port-level-without-port', spec: { targetRefs: target, portLevelSettings: [{ loadBalancer: { simple: 'RANDOM' } }] }, field: 'spec.portLevelSettings[0].port', error: /spec\.portLevelSettings\[0\]\.port: Required value/ },
  { name: 'port-out-of-range', spec: { targetRefs: target, portLevelSettings: [{ port: { number: 70000 } }] }, field: 'spec.portLevelSettings[0].port.number', error: /spec\.portLevelSettings\[0\]\.port\.number: Invalid value: 70000/ },
];

test('the TrafficPolicy schema makes the API server refuse malformed policies at apply time (client- and server-side), its error naming the field', async () => {
  await kubectl(['create', 'namespace', 'malformed']);
  // The control: a well-formed policy using the same fields is accepted.
  await kubectl(['apply', '--server-side', '-f', '-'], trafficPolicy('malformed', 'well-formed', {
    targetRefs: target,
    loadBalancer: { simple: 'LEAST_REQUEST' },
    connectionPool: { tcp: { maxConnections: 10, connectTimeout: '1.5s' } },
    outlierDetection: { consecutive5xxErrors: 3, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
    fault: { abort: { httpStatus: 503, percentage: { value: 10 } } },
    portLevelSettings: [{ port: { number: 8080 }, loadBalancer: { simple: 'RANDOM' } }],
  }));
  for (const bad of MALFORMED) {
    // `kubectl apply` as most operators run it: the API server's validation message.
    const client = await cluster.kubectl(['apply', '-f', '-'], trafficPolicy('malformed', bad.name, bad.spec));
    assert.notEqual(client.code, 0, `${bad.name} was accepted: ${client.stdout}`);
    assert.match(client.stderr, /is invalid/, `${bad.name}: ${client.stderr}`);
    assert.match(client.stderr, bad.error, `${bad.name}: ${client.stderr}`);
    // Server-side apply: a type mismatch is refused earlier (building the typed patch), other faults by the same validation.
    const server = await cluster.kubectl(['apply', '--server-side', '-f', '-'], trafficPolicy('malformed', bad.name, bad.spec));
    assert.notEqual(server.code, 0, `${bad.name} was accepted by a server-side apply: ${server.stdout}`);
    assert.ok(server.stderr.includes(bad.field), `${bad.name}: the server-side refusal does not name ${bad.field}: ${server.stderr}`);
  }
  // Nothing malformed was stored.
  const names = (await kubectl(['get', 'trafficpolicies', '-n', 'malformed', '-o', 'jsonpath={.items[*].metadata.name}'])).split(/\s+/).filter(Boolean);
  assert.deepEqual(names, ['well-formed']);
});

function security(kind: 'AuthorizationPolicy' | 'PeerAuthentication', namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'security.weft.dev/v1', kind, metadata: { name, namespace }, spec });
}

/**
 * Well-formed security policies: the examples of Istio's AuthorizationPolicy and PeerAuthentication
 * reference pages (security.istio.io/v1, apiVersion changed), less what Weft refuses (JWT claims,
 * a port-level mTLS mode: both are in WELL_KNOWN_REFUSED below), and a policy setting every field.
 */
const WELL_FORMED: { kind: 'AuthorizationPolicy' | 'PeerAuthentication'; name: string; spec: Record<string, unknown>; column: string }[] = [
  { kind: 'AuthorizationPolicy', name: 'httpbin', column: 'ALLOW', spec: {
    selector: { matchLabels: { app: 'httpbin', version: 'v1' } }, action: 'ALLOW',
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }, { source: { namespaces: ['dev'] } }], to: [{ operation: { methods: ['GET'] } }] }],
  } },
  { kind: 'AuthorizationPolicy', name: 'httpbin-deny', column: 'DENY', spec: {
    selector: { matchLabels: { app: 'httpbin', version: 'v1' } }, action: 'DENY',
    rules: [{ from: [{ source: { notNamespaces: ['foo'] } }] }],
  } },
  { kind: 'AuthorizationPolicy', name: 'allow-nothing', column: '', spec: {} },
  { kind: 'AuthorizationPolicy', name: 'deny-all', column: 'DENY', spec: { action: 'DENY', rules: [{}] } },
  { kind: 'AuthorizationPolicy', name: 'allow-all', column: 'ALLOW', spec: { action: 'ALLOW', rules: [{}] } },
  { kind: 'AuthorizationPolicy', name: 'allow-read', column: '', spec: {
    selector: { matchLabels: { app: 'products' } },
    rules: [{ to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }], when: [{ key: 'request.headers[version]', values: ['v1', 'v2'] }] }],
  } },
  { kind: 'AuthorizationPolicy', name: 'ingress-ip', column: '', spec: {
    rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4', '5.6.7.0/24'], remoteIpBlocks: ['fd00::/64'] } }], to: [{ operation: { ports: ['8080'], notPaths: ['/healthz'] } }] }],
  } },
  { kind: 'AuthorizationPolicy', name: 'audit-profile', column: 'AUDIT', spec: {
    selector: { matchLabels: { app: 'myapi' } }, action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/user/profile/*'] } }] }],
  } },
  { kind: 'AuthorizationPolicy', name: 'every-condition', column: 'DENY', spec: {
    action: 'DENY',
    rules: [{ when: [
      { key: 'source.ip', values: ['10.1.0.0/16'] }, { key: 'remote.ip', notValues: ['10.2.0.1'] }, { key: 'destination.ip', values: ['10.3.0.1'] },
      { key: 'source.namespace', values: ['shop'] }, { key: 'source.principal', values: ['cluster.local/ns/shop/sa/*'] },
      { key: 'connection.sni', values: ['*.shop.svc.cluster.local'] }, { key: 'destination.port', values: ['9080'] },
    ] }],
  } },
  { kind: 'PeerAuthentication', name: 'default', column: 'STRICT', spec: { mtls: { mode: 'STRICT' } } },
  { kind: 'PeerAuthentication', name: 'permissive', column: 'PERMISSIVE', spec: { mtls: { mode: 'PERMISSIVE' } } },
  { kind: 'PeerAuthentication', name: 'finance', column: 'DISABLE', spec: { selector: { matchLabels: { app: 'finance' } }, mtls: { mode: 'DISABLE' } } },
  { kind: 'PeerAuthentication', name: 'inherit', column: '', spec: { selector: { matchLabels: { app: 'reviews' } }, portLevelMtls: { 9080: { mode: 'UNSET' } } } },
];

/**
 * Malformed or refused security policies: the field the refusal names and the API server's message
 * (`kubectl apply`, client-side; strict field validation reports an unknown field before the rest).
 */
const WELL_KNOWN_REFUSED: { kind: 'AuthorizationPolicy' | 'PeerAuthentication'; name: string; spec: Record<string, unknown>; field: string; error: RegExp }[] = [
  // Istio's documentation examples that Weft cannot carry out: refused with Weft's reason.
  { kind: 'AuthorizationPolicy', name: 'jwt-claim', spec: { rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }], when: [{ key: 'request.auth.claims[iss]', values: ['https://accounts.google.com'] }] }] }, field: 'spec.rules[0].when[0].key', error: /spec\.rules\[0\]\.when\[0\]\.key: Invalid value: "request\.auth\.claims\[iss\]": .*Weft validates no JWTs/ },
  { kind: 'AuthorizationPolicy', name: 'request-principals', spec: { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] }, field: 'spec.rules[0].from[0].source.notRequestPrincipals', error: /spec\.rules\[0\]\.from\[0\]\.source\.notRequestPrincipals: Invalid value: is not supported: Weft validates no JWTs/ },
  { kind: 'AuthorizationPolicy', name: 'ext-authz', spec: { action: 'CUSTOM', provider: { name: 'my-ext-authz' }, rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] }, field: 'spec.action', error: /spec\.action: Invalid value: "CUSTOM": CUSTOM is not supported: Weft has no external authorization provider/ },
  { kind: 'PeerAuthentication', name: 'finance-port', spec: { selector: { matchLabels: { app: 'finance' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'DISABLE' } } }, field: 'spec.portLevelMtls[8080].mode', error: /spec\.portLevelMtls\[8080\]\.mode: Invalid value: is not enforced by Weft: the mode applies to the whole pod/ },
  // Malformed.
  { kind: 'AuthorizationPolicy', name: 'action-log', spec: { action: 'LOG', rules: [{}] }, field: 'spec.action', error: /spec\.action: Unsupported value: "LOG": supported values: "ALLOW", "DENY", "AUDIT"/ },
  { kind: 'AuthorizationPolicy', name: 'deny-without-rules', spec: { action: 'DENY' }, field: 'spec.rules', error: /spec\.rules: Invalid value: a DENY policy without rules never matches/ },
  { kind: 'AuthorizationPolicy', name: 'target-ref', spec: { targetRef: { group: '', kind: 'Service', name: 'web' } }, field: 'spec.targetRef', error: /spec\.targetRef: Invalid value: is not supported yet; select the workloads with spec\.selector\.matchLabels/ },
  { kind: 'AuthorizationPolicy', name: 'service-accounts', spec: { rules: [{ from: [{ source: { serviceAccounts: ['shop/web'] } }] }] }, field: 'spec.rules[0].from[0].source.serviceAccounts', error: /spec\.rules\[0\]\.from\[0\]\.source\.serviceAccounts: Invalid value: is not supported yet; write principals/ },
  { kind: 'AuthorizationPolicy', name: 'typo', spec: { rules: [{ from: [{ source: { namespaces: ['shop'] } }], too: [{ operation: { methods: ['GET'] } }] }] }, field: 'spec.rules[0].too', error: /unknown field "spec\.rules\[0\]\.too"/ },
  { kind: 'AuthorizationPolicy', name: 'empty-from', spec: { rules: [{ from: [] }] }, field: 'spec.rules[0].from', error: /spec\.rules\[0\]\.from: Invalid value: .*should have at least 1 items/ },
  { kind: 'AuthorizationPolicy', name: 'from-without-source', spec: { rules: [{ from: [{}] }] }, field: 'spec.rules[0].from[0].source', error: /spec\.rules\[0\]\.from\[0\]\.source: Required value/ },
  { kind: 'AuthorizationPolicy', name: 'empty-operation', spec: { rules: [{ to: [{ operation: {} }] }] }, field: 'spec.rules[0].to[0].operation', error: /spec\.rules\[0\]\.to\[0\]\.operation: Invalid value: .*should have at least 1 properties/ },
  { kind: 'AuthorizationPolicy', name: 'star-inside', spec: { rules: [{ from: [{ source: { principals: ['cluster.local/*/sa/web'] } }] }] }, field: 'spec.rules[0].from[0].source.principals[0]', error: /spec\.rules\[0\]\.from\[0\]\.source\.principals\[0\]: Invalid value: "cluster\.local\/\*\/sa\/web": .*should match/ },
  { kind: 'AuthorizationPolicy', name: 'port-unquoted', spec: { rules: [{ to: [{ operation: { ports: [8080] } }] }] }, field: 'spec.rules[0].to[0].operation.ports[0]', error: /spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: Invalid value: "integer": .*must be of type string/ },
  { kind: 'AuthorizationPolicy', name: 'port-70000', spec: { rules: [{ to: [{ operation: { notPorts: ['70000'] } }] }] }, field: 'spec.rules[0].to[0].operation.notPorts[0]', error: /spec\.rules\[0\]\.to\[0\]\.operation\.notPorts\[0\]: Invalid value: "70000": .*should match/ },
  { kind: 'AuthorizationPolicy', name: 'ip-block-name', spec: { rules: [{ from: [{ source: { ipBlocks: ['gateway'] } }] }] }, field: 'spec.rules[0].from[0].source.ipBlocks[0]', error: /spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: Invalid value: "gateway": .*should match/ },
  { kind: 'AuthorizationPolicy', name: 'unknown-key', spec: { rules: [{ when: [{ key: 'source.user', values: ['alice'] }] }] }, field: 'spec.rules[0].when[0].key', error: /spec\.rules\[0\]\.when\[0\]\.key: Invalid value: "source\.user": unknown key "source\.user"; Weft evaluates request\.headers\[NAME\]/ },
  { kind: 'AuthorizationPolicy', name: 'header-key-unbracketed', spec: { rules: [{ when: [{ key: 'request.headers.x-user', values: ['alice'] }] }] }, field: 'spec.rules[0].when[0].key', error: /spec\.rules\[0\]\.when\[0\]\.key: Invalid value: "request\.headers\.x-user": .*must be written request\.headers\[NAME\]/ },
  { kind: 'AuthorizationPolicy', name: 'condition-without-values', spec: { rules: [{ when: [{ key: 'source.ip' }] }] }, field: 'spec.rules[0].when[0]', error: /spec\.rules\[0\]\.when\[0\]: Invalid value: needs values or notValues/ },
  { kind: 'AuthorizationPolicy', name: 'label-number', spec: { selector: { matchLabels: { tier: 1 } } }, field: 'spec.selector.matchLabels.tier', error: /spec\.selector\.matchLabels\.tier: Invalid value: "integer": .*must be of type string/ },
  { kind: 'PeerAuthentication', name: 'mode-lowercase', spec: { mtls: { mode: 'strict' } }, field: 'spec.mtls.mode', error: /spec\.mtls\.mode: Unsupported value: "strict": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"/ },
  { kind: 'PeerAuthentication', name: 'mode-typo', spec: { mtls: { mod: 'STRICT' } }, field: 'spec.mtls.mod', error: /unknown field "spec\.mtls\.mod"/ },
  { kind: 'PeerAuthentication', name: 'port-level-without-selector', spec: { portLevelMtls: { 8080: { mode: 'UNSET' } } }, field: 'spec.portLevelMtls', error: /spec\.portLevelMtls: Invalid value: needs spec\.selector\.matchLabels/ },
  { kind: 'PeerAuthentication', name: 'port-level-name', spec: { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { http: {} } }, field: 'spec.portLevelMtls', error: /spec\.portLevelMtls: Invalid value: "http" is not a port number \(1 to 65535\)/ },
];

test('the AuthorizationPolicy and PeerAuthentication schemas accept Istio\'s documented policies and refuse malformed ones at apply time (client- and server-side), the error naming the field', async () => {
  await kubectl(['create', 'namespace', 'security']);
  // The schema and the control plane's conversion judge each of these alike.
  const conversionErrors = (text: string): string[] => { const r = parseConfig(text, 'kube-manifests'); return r.ok ? [] : r.error.map((e) => `${e.field}: ${e.message}`); };
  for (const ok of WELL_FORMED) assert.deepEqual(conversionErrors(security(ok.kind, 'security', ok.name, ok.spec)), [], `${ok.kind} ${ok.name}`);
  for (const bad of WELL_KNOWN_REFUSED) {
    const errors = conversionErrors(security(bad.kind, 'security', bad.name, bad.spec));
    assert.ok(errors.some((e) => e.startsWith(bad.field)), `${bad.kind} ${bad.name}: the conversion does not refuse ${bad.field}: ${JSON.stringify(errors)}`);
  }
  for (const ok of WELL_FORMED) {
    const out = await kubectl(['apply', '--server-side', '-f', '-'], security(ok.kind, 'security', ok.name, ok.spec));
    assert.match(out, /serverside-applied/, `${ok.kind} ${ok.name}`);
    // Stored as written: the schema prunes nothing of a well-formed policy.
    const stored = JSON.parse(await kubectl(['get', `${ok.kind.toLowerCase()}.security.weft.dev`, ok.name, '-n', 'security', '-o', 'json'])) as { spec?: unknown };
    assert.deepEqual(stored.spec ?? {}, JSON.parse(JSON.stringify(ok.spec)), `${ok.kind} ${ok.name} stored as written`);
  }
  for (const bad of WELL_KNOWN_REFUSED) {
    const client = await cluster.kubectl(['apply', '-f', '-'], security(bad.kind, 'security', bad.name, bad.spec));
    assert.notEqual(client.code, 0, `${bad.kind} ${bad.name} was accepted: ${client.stdout}`);
    assert.match(client.stderr, bad.error, `${bad.name}: ${client.stderr}`);
    const server = await cluster.kubectl(['apply', '--server-side', '-f', '-'], security(bad.kind, 'security', bad.name, bad.spec));
    assert.notEqual(server.code, 0, `${bad.kind} ${bad.name} was accepted by a server-side apply: ${server.stdout}`);
    assert.ok(server.stderr.includes(bad.field), `${bad.name}: the server-side refusal does not name ${bad.field}: ${server.stderr}`);
  }
  // Nothing refused was stored; `kubectl get` shows each policy's Action or Mode column.
  for (const [kind, column] of [['AuthorizationPolicy', 'ACTION'], ['PeerAuthentication', 'MODE']] as const) {
    const [header, ...rows] = (await kubectl(['get', `${kind.toLowerCase()}.security.weft.dev`, '-n', 'security'])).trimEnd().split('\n');
    assert.deepEqual(header!.split(/\s+/), ['NAME', column, 'ACCEPTED', 'AGE']);
    // An unset action or mode is a blank cell (as with Istio's CRDs: nothing is defaulted into the stored spec).
    const [from, to] = [header!.indexOf(column), header!.indexOf('ACCEPTED')];
    const shown = rows.map((r) => [r.split(/\s+/)[0], r.slice(from, to).trim()]).sort();
    assert.deepEqual(shown, WELL_FORMED.filter((w) => w.kind === kind).map((w) => [w.name, w.column]).sort());
  }
});

function proxyConfig(spec: Record<string, unknown>, name = 'default'): string {
  return JSON.stringify({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name }, spec });
}

/** A ProxyConfig setting every field proxy-config.ts reads (test/unit/proxy-config-crd.test.ts checks that this is all of them against the schema). */
const EVERY_PROXY_CONFIG_FIELD = {
  protocolDetectionTimeoutMs: 300,
  http: {
    maxHeaderBytes: 32768, maxHeaderPairs: 80, maxRequestBodyBytes: 1048576, headersTimeoutMs: 20000, requestTimeoutMs: 120000, idleTimeoutMs: 600000,
    maxConcurrentStreams: 250, maxSessionInvalidFrames: 50, maxSessionRejectedStreams: 50, maxSettingsEntries: 16, maxOutstandingPings: 5,
    maxSessionMemoryMiB: 20, resetBurst: 100, resetsPerSecond: 50, settingsBurst: 20, settingsPerSecond: 5, maxDenyDrainBytes: 0,
  },
  tracing: { otlpEndpoint: 'http://otel-collector.observability:4318/v1/traces', samplingPercent: 2.5, serviceName: 'mesh' },
  accessLog: { enabled: true, level: 'errors', samplingPercent: 10 },
  telemetry: { metrics: false },
  sameNodeSplice: false,
  fairness: { maxConnectionsPerPod: 2048, maxPendingPerPod: 64, readBudgetBytes: 131072, overloadLagMs: 30, shedMs: 500 },
};

/** Malformed ProxyConfigs: the field the refusal must name and the API server's message (client-side `kubectl apply`). */
const MALFORMED_PROXY_CONFIGS: { what: string; name?: string; spec: Record<string, unknown>; field: string; error: RegExp }[] = [
  { what: 'unknown field', spec: { accessLog: { levle: 'errors' } }, field: 'spec.accessLog.levle', error: /unknown field "spec\.accessLog\.levle"/ },
  { what: 'unknown top-level field', spec: { accessLogs: { level: 'errors' } }, field: 'spec.accessLogs', error: /unknown field "spec\.accessLogs"/ },
  { what: 'string for a boolean', spec: { telemetry: { metrics: 'no' } }, field: 'spec.telemetry.metrics', error: /spec\.telemetry\.metrics: Invalid value: "string": .*must be of type boolean/ },
  { what: 'fraction for a count', spec: { fairness: { shedMs: 1.5 } }, field: 'spec.fairness.shedMs', error: /spec\.fairness\.shedMs: Invalid value: "number": .*must be of type integer/ },
  { what: 'read budget below its minimum', spec: { fairness: { readBudgetBytes: 1024 } }, field: 'spec.fairness.readBudgetBytes', error: /spec\.fairness\.readBudgetBytes: Invalid value: 1024: .*should be greater than or equal to 4096/ },
  { what: 'detection timeout above its maximum', spec: { protocolDetectionTimeoutMs: 20000 }, field: 'spec.protocolDetectionTimeoutMs', error: /spec\.protocolDetectionTimeoutMs: Invalid value: 20000: .*should be less than or equal to 10000/ },
  { what: 'zero header limit', spec: { http: { maxHeaderBytes: 0 } }, field: 'spec.http.maxHeaderBytes', error: /spec\.http\.maxHeaderBytes: Invalid value: 0: .*should be greater than or equal to 1/ },
  { what: 'streams past 2^31', spec: { http: { maxConcurrentStreams: 2147483648 } }, field: 'spec.http.maxConcurrentStreams', error: /spec\.http\.maxConcurrentStreams: Invalid value: 2147483648: .*should be less than or equal to 2147483647/ },
  { what: 'headers timeout beyond the request timeout', spec: { http: { requestTimeoutMs: 30000 } }, field: 'spec.http.headersTimeoutMs', error: /spec\.http\.headersTimeoutMs: Invalid value: .*must not exceed requestTimeoutMs/ },
  { what: 'bad access-log level', spec: { accessLog: { level: 'warnings' } }, field: 'spec.accessLog.level', error: /spec\.accessLog\.level: Unsupported value: "warnings": supported values: "all", "errors", "denials"/ },
  { what: 'sampling above 100', spec: { accessLog: { samplingPercent: 150 } }, field: 'spec.accessLog.samplingPercent', error: /spec\.accessLog\.samplingPercent: Invalid value: 150: .*should be less than or equal to 100/ },
  { what: 'tracing without an endpoint', spec: { tracing: { samplingPercent: 5 } }, field: 'spec.tracing.otlpEndpoint', error: /spec\.tracing\.otlpEndpoint: Required value/ },
  { what: 'endpoint that is not an http URL', spec: { tracing: { otlpEndpoint: 'otel-collector:4318' } }, field: 'spec.tracing.otlpEndpoint', error: /spec\.tracing\.otlpEndpoint: Invalid value: "otel-collector:4318": .*should match/ },
  { what: 'a second ProxyConfig', name: 'mesh', spec: { accessLog: { level: 'errors' } }, field: 'metadata.name', error: /metadata\.name must be "default": there is one ProxyConfig/ },
];

test('the ProxyConfig schema accepts one setting every field, stored as written, and refuses malformed ones or another name at apply time (client- and server-side), naming the field', async () => {
  const conversionErrors = (text: string): string[] => { const r = parseConfig(text, 'kube-manifests'); return r.ok ? [] : r.error.map((e) => `${e.field}: ${e.message}`); };
  assert.deepEqual(conversionErrors(proxyConfig(EVERY_PROXY_CONFIG_FIELD)), []);
  const out = await kubectl(['apply', '--server-side', '-f', '-'], proxyConfig(EVERY_PROXY_CONFIG_FIELD));
  assert.match(out, /proxyconfig\.config\.weft\.dev\/default serverside-applied/);
  const stored = JSON.parse(await kubectl(['get', 'proxyconfig.config.weft.dev', 'default', '-o', 'json'])) as { spec: unknown; metadata: { namespace?: string } };
  assert.deepEqual(stored.spec, EVERY_PROXY_CONFIG_FIELD, 'stored as written: nothing pruned');
  assert.equal(stored.metadata.namespace, undefined, 'cluster-scoped');
  // `kubectl get` shows the access-log level, the metrics switch and the tracing endpoint.
  const [header, row] = (await kubectl(['get', 'proxyconfigs.config.weft.dev'])).trimEnd().split('\n');
  assert.deepEqual(header!.split(/\s+/), ['NAME', 'ACCESS-LOG', 'METRICS', 'TRACING', 'ACCEPTED', 'AGE']);
  assert.deepEqual(row!.split(/\s+/).slice(0, 4), ['default', 'errors', 'false', 'http://otel-collector.observability:4318/v1/traces']);
  // Each malformed one is applied as a new object: over the stored `default`, a client-side apply
  // merges into what is there (e.g. its headersTimeoutMs would make a lone requestTimeoutMs valid).
  await kubectl(['delete', 'proxyconfig.config.weft.dev', 'default']);

  for (const bad of MALFORMED_PROXY_CONFIGS) {
    // The control plane's conversion refuses it too, naming the same field (it is the contract the schema mirrors).
    const errors = conversionErrors(proxyConfig(bad.spec, bad.name));
    assert.ok(errors.some((e) => e.includes(bad.field.split('.').at(-1)!)), `${bad.what}: the conversion does not refuse ${bad.field}: ${JSON.stringify(errors)}`);
    const client = await cluster.kubectl(['apply', '-f', '-'], proxyConfig(bad.spec, bad.name));
    assert.notEqual(client.code, 0, `${bad.what} was accepted: ${client.stdout}`);
    assert.match(client.stderr, bad.error, `${bad.what}: ${client.stderr}`);
    const server = await cluster.kubectl(['apply', '--server-side', '-f', '-'], proxyConfig(bad.spec, bad.name));
    assert.notEqual(server.code, 0, `${bad.what} was accepted by a server-side apply: ${server.stdout}`);
    assert.ok(server.stderr.includes(bad.field), `${bad.what}: the server-side refusal does not name ${bad.field}: ${server.stderr}`);
  }
  // Nothing malformed was stored.
  const names = (await kubectl(['get', 'proxyconfigs.config.weft.dev', '-o', 'jsonpath={.items[*].metadata.name}'])).split(/\s+/).filter(Boolean);
  assert.deepEqual(names, []);
});

test('the status subresource of AuthorizationPolicy and PeerAuthentication takes typed conditions and refuses malformed ones', async () => {
  await kubectl(['create', 'namespace', 'security-status']);
  const condition = { type: 'Accepted', status: 'False', reason: 'Invalid', message: 'spec.rules[0].to[0].operation.paths[0]: path templates are not supported', observedGeneration: 1, lastTransitionTime: '2025-01-01T00:00:00Z' };
  for (const [kind, spec] of [['AuthorizationPolicy', { rules: [{}] }], ['PeerAuthentication', { mtls: { mode: 'STRICT' } }]] as const) {
    const resource = `${kind.toLowerCase()}.security.weft.dev`;
    await kubectl(['apply', '-f', '-'], security(kind, 'security-status', 'p', spec));
    await kubectl(['patch', resource, 'p', '-n', 'security-status', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { conditions: [condition] } })]);
    const stored = JSON.parse(await kubectl(['get', resource, 'p', '-n', 'security-status', '-o', 'json'])) as { status: { conditions: unknown[] }; spec: unknown };
    assert.deepEqual(stored.status.conditions, [condition]);
    assert.deepEqual(stored.spec, spec, 'a status write leaves the spec alone');
    const bad = await cluster.kubectl(['patch', resource, 'p', '-n', 'security-status', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { conditions: [{ ...condition, status: 'Maybe' }] } })]);
    assert.notEqual(bad.code, 0, `${kind}: a condition with status Maybe was accepted`);
    assert.match(bad.stderr, /status\.conditions\[0\]\.status: Unsupported value: "Maybe"/);
  }
});

test('uninstalling (kubectl delete -k daemonset/) removes every object; the namespace controller empties and removes weft-system', async () => {
  await kubectl(['delete', '-k', DAEMONSET, '--ignore-not-found', '--wait=false']);
  await waitFor('namespace weft-system to be gone', async () => (await cluster.kubectl(['get', 'namespace', 'weft-system'])).code !== 0);
  await waitFor('the Weft CRDs to be gone', async () => (await kubectl(['get', 'crd', '-o', 'name'])).split('\n').every((n) => !n.includes('weft.dev')));
  const left = await kubectl(['get', 'clusterroles,clusterrolebindings', '-o', 'name']);
  assert.ok(!left.includes('weft-'), `left behind: ${left}`);
});

test('on the emptied cluster, one `kubectl apply -k daemonset/` installs everything from nothing (the namespace and CRDs ordered before what needs them)', async () => {
  await applyKustomization();
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(DAEMONSET, 'crds.yaml')]);
});
