import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { AGENT_SERVICE_ACCOUNT, AGENT_TOKEN_AUDIENCE } from '../../agent/controlplane/tokenreview-auth';
import { DEFAULT_TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY } from '../../agent/controlplane/trust-bundle-configmap';
import { IN_POD_CREDENTIALS } from '../../agent/node/credential-files';
import { PORTS } from '../../agent/node/ports';
import { DEFAULT_DRAIN_GRACE_MS, parseDrainGrace } from '../../agent/node/drain-grace';
import { serveMetrics } from '../../agent/telemetry/serve';
import { Registry } from 'prom-client';

/**
 * daemonset/ is what `kubectl apply -f daemonset/` installs. Nothing here talks to a cluster: the
 * manifests are parsed and cross-checked (what the agent's args name is mounted, the mounts are
 * what the control plane publishes and accepts, the RBAC grants what it needs and no more), and the
 * CLI is run with the manifests' args to show it accepts them.
 */

const ROOT = join(__dirname, '..', '..', '..');
const DIR = join(ROOT, 'daemonset');
const CLI = join(ROOT, 'dist', 'agent', 'cli.js');

/** Manifests are untyped YAML. */
type Obj = any; // eslint-disable-line @typescript-eslint/no-explicit-any

function load(): Obj[] {
  const objects: Obj[] = [];
  // kustomization.yaml is kustomize's list of these files (kubectl apply -k), not an object.
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(DIR, file), 'utf8')) as ReturnType<typeof parseAllDocuments> & unknown[]) {
      assert.deepEqual(doc.errors.map(String), [], `${file} parses`);
      assert.deepEqual(doc.warnings.map(String), [], `${file} parses without warnings`);
      const obj = doc.toJS() as Obj;
      if (obj !== null) objects.push({ ...obj, file });
    }
  }
  return objects;
}

const objects = load();

function find(kind: string, name: string, namespace?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name && (namespace === undefined || o.metadata?.namespace === namespace));
  assert.equal(found.length, 1, `one ${kind} ${namespace ? `${namespace}/` : ''}${name} in daemonset/`);
  return found[0];
}

/** `[cmd, --a, x, --b, y, --b, z]` → { a: [x], b: [y, z] }; every flag takes a value in these manifests. */
function flagsOf(args: string[]): Record<string, string[]> {
  const flags: Record<string, string[]> = {};
  for (let i = 1; i < args.length; i += 2) {
    assert.match(args[i]!, /^--[a-z-]+$/, `argument ${i} (${args[i]}) is a flag`);
    assert.ok(i + 1 < args.length, `${args[i]} has a value`);
    (flags[args[i]!.slice(2)] ??= []).push(args[i + 1]!);
  }
  return flags;
}

function one(flags: Record<string, string[]>, name: string): string {
  assert.equal(flags[name]?.length, 1, `--${name} given once`);
  return flags[name]![0]!;
}

const ref = (text: string) => { const [namespace, name] = text.split('/'); return { namespace: namespace!, name: name! }; };

const agentSet = find('DaemonSet', 'weft-agent', 'weft-system');
const agentPod = agentSet.spec.template.spec;
const agentContainer = agentPod.containers.find((c: Obj) => c.name === 'agent');
const agentArgs: string[] = agentContainer.args;
const agentFlags = flagsOf(agentArgs);
const cpDeployment = find('Deployment', 'weft-controlplane', 'weft-system');
const cpPod = cpDeployment.spec.template.spec;
const cpArgs: string[] = cpPod.containers.find((c: Obj) => c.name === 'controlplane').args;
const cpFlags = flagsOf(cpArgs);

/** The volume mounted at the directory holding `path`, and the file's name in it. */
function volumeFor(path: string): { volume: Obj; file: string } {
  const mount = agentContainer.volumeMounts.find((m: Obj) => m.mountPath === dirname(path));
  assert.ok(mount, `a volume is mounted at ${dirname(path)} (for ${path})`);
  const volume = agentPod.volumes.find((v: Obj) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name} is defined`);
  return { volume, file: basename(path) };
}

interface Rule { apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; verbs?: string[] }

/** RBAC's own evaluation: a rule with resourceNames never matches a request without a name (create). */
function allowed(rules: Rule[], request: { resource: string; verb: string; name?: string }): boolean {
  return rules.some((r) => (r.apiGroups ?? []).some((g) => g === '' || g === '*')
    && (r.resources ?? []).some((x) => x === request.resource || x === '*')
    && (r.verbs ?? []).some((v) => v === request.verb || v === '*')
    && (r.resourceNames === undefined || r.resourceNames.length === 0 || (request.name !== undefined && r.resourceNames.includes(request.name))));
}

/** Every rule of the (Cluster)Roles bound to the ServiceAccount that apply in `namespace`. */
function rulesFor(serviceAccount: { namespace: string; name: string }, namespace: string): Rule[] {
  const isSubject = (b: Obj) => (b.subjects ?? []).some((s: Obj) => s.kind === 'ServiceAccount' && s.name === serviceAccount.name && s.namespace === serviceAccount.namespace);
  const rules: Rule[] = [];
  for (const binding of objects.filter((o) => (o.kind === 'RoleBinding' && o.metadata.namespace === namespace) || o.kind === 'ClusterRoleBinding').filter(isSubject)) {
    const role = binding.roleRef.kind === 'ClusterRole' ? find('ClusterRole', binding.roleRef.name) : find('Role', binding.roleRef.name, binding.metadata.namespace);
    rules.push(...role.rules);
  }
  return rules;
}

test('every manifest parses, names itself, and namespaced objects are in weft-system', () => {
  assert.ok(objects.length >= 10, `${objects.length} objects`);
  find('Namespace', 'weft-system');
  for (const o of objects) {
    assert.ok(o.apiVersion && o.kind && o.metadata?.name, `${o.file}: apiVersion, kind and metadata.name`);
    const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition'].includes(o.kind);
    assert.equal(o.metadata.namespace, clusterScoped ? undefined : 'weft-system', `${o.kind} ${o.metadata.name}`);
  }
});

test('the agent authenticates with a projected token for the audience the control plane asks TokenReview about', () => {
  const tokenFile = one(agentFlags, 'token-file');
  const { volume, file } = volumeFor(tokenFile);
  const sources = volume.projected?.sources ?? [];
  const projected = sources.find((s: Obj) => s.serviceAccountToken?.path === file)?.serviceAccountToken;
  assert.ok(projected, `${tokenFile} is a projected serviceAccountToken (volume ${volume.name})`);
  assert.equal(projected.audience, AGENT_TOKEN_AUDIENCE);
  assert.ok(projected.expirationSeconds >= 600 && projected.expirationSeconds <= 86_400, `expirationSeconds ${projected.expirationSeconds}: the API server takes 600 s to 24 h`);
  assert.equal(tokenFile, IN_POD_CREDENTIALS.tokenFile, 'the same path as the agent\'s default in a pod');
  assert.deepEqual({ namespace: agentSet.metadata.namespace, name: agentPod.serviceAccountName }, AGENT_SERVICE_ACCOUNT, 'the ServiceAccount TokenReview accepts');
  assert.equal(agentPod.automountServiceAccountToken, false, 'no API-server token in the agent pod: it never calls the API server');
});

test('the agent reads the trust bundle from the ConfigMap the control plane publishes, in its own namespace', () => {
  const caFile = one(agentFlags, 'ca-file');
  const { volume, file } = volumeFor(caFile);
  assert.ok(volume.configMap, `${caFile} is a ConfigMap volume`);
  const published = ref(one(cpFlags, 'trust-bundle-configmap'));
  assert.deepEqual(published, DEFAULT_TRUST_BUNDLE_CONFIGMAP, 'the manifest spells out the default');
  assert.equal(volume.configMap.name, published.name);
  assert.equal(agentSet.metadata.namespace, published.namespace, 'a pod mounts ConfigMaps of its own namespace only');
  const items: Array<{ key: string; path: string }> = volume.configMap.items ?? [{ key: TRUST_BUNDLE_KEY, path: TRUST_BUNDLE_KEY }];
  assert.ok(items.some((i) => i.key === TRUST_BUNDLE_KEY && i.path === file), `key ${TRUST_BUNDLE_KEY} is the file ${file}`);
  assert.notEqual(volume.configMap.optional, true, 'the pod waits for the bundle rather than starting without it');
  assert.equal(caFile, IN_POD_CREDENTIALS.caFile, 'the same path as the agent\'s default in a pod');
});

test('the agent dials the control plane\'s Service by a name in its serving certificate, on a port the Service has', () => {
  const [host, port] = one(agentFlags, 'control-plane').split(':');
  const match = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc$/.exec(host!);
  assert.ok(match, `${host} is <service>.<namespace>.svc`);
  const service = find('Service', match[1]!, match[2]!);
  assert.ok(service.spec.ports.some((p: Obj) => p.port === Number(port)), `Service port ${port}`);
  assert.deepEqual(service.spec.selector, cpDeployment.spec.template.metadata.labels, 'the Service selects the control plane');
  assert.ok(cpFlags['serving-name']?.includes(host!), `${host} is a --serving-name of the control plane`);
  assert.equal(agentPod.dnsPolicy, 'ClusterFirstWithHostNet', 'a host-network pod resolves Service names only with this policy');
  const env = new Set((agentContainer.env ?? []).map((e: Obj) => e.name));
  for (const arg of agentArgs) for (const [, name] of arg.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(env.has(name), `$(${name}) is defined in env`);
  for (const m of agentContainer.volumeMounts) assert.ok(agentPod.volumes.some((v: Obj) => v.name === m.name), `volume ${m.name} is defined`);
});

test('the control plane may read and update only its ConfigMap and Secret, create them, and review tokens', () => {
  const sa = { namespace: cpDeployment.metadata.namespace, name: cpPod.serviceAccountName };
  find('ServiceAccount', sa.name, sa.namespace);
  const bundle = ref(one(cpFlags, 'trust-bundle-configmap'));
  const secret = ref(one(cpFlags, 'ca-secret'));
  for (const [resource, object] of [['configmaps', bundle], ['secrets', secret]] as const) {
    const rules = rulesFor(sa, object.namespace);
    for (const verb of ['get', 'update']) assert.ok(allowed(rules, { resource, verb, name: object.name }), `${verb} ${resource} ${object.name}`);
    assert.ok(allowed(rules, { resource, verb: 'create' }), `create ${resource}`);
    assert.equal(allowed(rules, { resource, verb: 'update', name: 'something-else' }), false, `update is limited to ${object.name}`);
    for (const verb of ['list', 'watch', 'delete', 'patch']) assert.equal(allowed(rules, { resource, verb, name: object.name }), false, `no ${verb} on ${resource}`);
  }
  const cluster = rulesFor(sa, 'weft-system');
  assert.ok(cluster.some((r) => r.apiGroups?.includes('authentication.k8s.io') && r.resources?.includes('tokenreviews') && r.verbs?.includes('create')), 'create tokenreviews');
  assert.deepEqual(rulesFor(AGENT_SERVICE_ACCOUNT, 'weft-system'), [], 'the agent\'s ServiceAccount is granted nothing');
});

test('the CLI accepts the agent\'s and the control plane\'s args as the manifests give them', async (t) => {
  if (!existsSync(CLI)) return t.skip('dist/agent/cli.js is not built');
  const run = (args: string[]) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_NAME: 'node-a' };
    delete env.KUBERNETES_SERVICE_HOST;
    execFile(process.execPath, [CLI, ...args.map((a) => a.replace('$(NODE_NAME)', 'node-a'))], { env, timeout: 20_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr }));
  });
  // Past flag parsing, each stops at the first thing only a cluster has: the projected token, the kubeconfig.
  if (existsSync(IN_POD_CREDENTIALS.tokenFile)) {
    t.diagnostic(`${IN_POD_CREDENTIALS.tokenFile} exists here; the agent's args are not run`);
  } else {
    const agent = await run(agentArgs);
    assert.equal(agent.code, 1);
    assert.match(agent.stderr, new RegExp(`^weft: cannot read the token file ${IN_POD_CREDENTIALS.tokenFile}: ENOENT`), agent.stderr);
  }
  const kubeconfig = '/nonexistent/weft-manifest-test/kubeconfig';
  const cp = await run([...cpArgs, '--kubeconfig', kubeconfig]);
  assert.equal(cp.code, 1);
  assert.match(cp.stderr, new RegExp(`^weft: .*ENOENT.*${kubeconfig}`), cp.stderr);
});

test('the agent rolls out hitlessly: a surge pod per node, none unavailable, and a grace period longer than its drain', () => {
  // docs/upgrade.md: the new agent starts beside the old one (shared ports), the old pod goes only once the new one is ready.
  assert.equal(agentSet.spec.updateStrategy.type, 'RollingUpdate');
  assert.deepEqual(agentSet.spec.updateStrategy.rollingUpdate, { maxSurge: 1, maxUnavailable: 0 });
  const drainMs = agentFlags['drain-grace'] ? (parseDrainGrace(one(agentFlags, 'drain-grace')) as { ok: true; value: number }).value : DEFAULT_DRAIN_GRACE_MS;
  const graceS: number = agentPod.terminationGracePeriodSeconds ?? 30;
  assert.ok(graceS * 1000 >= drainMs + 5_000, `terminationGracePeriodSeconds (${graceS}) leaves the agent its drain (${drainMs} ms) and 5 s to exit`);
  // Readiness is what lets the rollout go on: it must be the agent's own health port, which answers not ready until every listener is up.
  assert.equal(agentContainer.readinessProbe.httpGet.port, PORTS.health);
  assert.equal(agentContainer.readinessProbe.httpGet.path, '/healthz/ready');
});

test('the CRDs of Weft\'s own groups are shipped, each served at the group, version and plural the control plane watches', () => {
  for (const [kind, plural] of [['AuthorizationPolicy', 'authorizationpolicies'], ['PeerAuthentication', 'peerauthentications']] as const) {
    const crd = find('CustomResourceDefinition', `${plural}.security.weft.dev`);
    assert.equal(crd.spec.names.kind, kind);
    assert.equal(crd.spec.names.plural, plural);
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(crd.spec.versions.map((v: Obj) => [v.name, v.served, v.storage]), [['v1', true, true]]);
  }
});

test('Prometheus finds the agents: scrape annotations and a named container port on the metrics port, a path the agent serves', async () => {
  const annotations = agentSet.spec.template.metadata.annotations ?? {};
  assert.equal(annotations['prometheus.io/scrape'], 'true');
  assert.equal(annotations['prometheus.io/port'], String(PORTS.metrics));
  const path: string = annotations['prometheus.io/path'];
  assert.equal(path, '/stats/prometheus');
  const port = agentContainer.ports.find((p: Obj) => p.containerPort === PORTS.metrics);
  assert.equal(port?.name, 'http-monitoring', 'the metrics port is named as Istio names 15020');
  // The annotated path is one the agent's metrics server really answers with the exposition format.
  const registry = new Registry();
  const srv = await serveMetrics('127.0.0.1', 0, registry);
  try {
    const addr = srv.address() as { port: number };
    const r = await fetch(`http://127.0.0.1:${addr.port}${path}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  } finally {
    await new Promise((r) => srv.close(r));
  }
});

test('the PodMonitor (daemonset/monitoring/, for the prometheus-operator) selects the agent pods on their metrics port and path', () => {
  const docs = parseAllDocuments(readFileSync(join(DIR, 'monitoring', 'podmonitor.yaml'), 'utf8')) as ReturnType<typeof parseAllDocuments> & unknown[];
  assert.equal(docs.length, 1);
  assert.deepEqual(docs[0]!.errors.map(String), []);
  const pm = docs[0]!.toJS() as Obj;
  assert.equal(pm.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(pm.kind, 'PodMonitor');
  assert.equal(pm.metadata.namespace, agentSet.metadata.namespace);
  assert.deepEqual(pm.spec.namespaceSelector.matchNames, [agentSet.metadata.namespace]);
  for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(agentSet.spec.template.metadata.labels[k], v, `selector ${k}=${v} matches the agent pods`);
  assert.equal(pm.spec.podMetricsEndpoints.length, 1);
  const ep = pm.spec.podMetricsEndpoints[0];
  const port = agentContainer.ports.find((p: Obj) => p.name === ep.port);
  assert.equal(port?.containerPort, PORTS.metrics, `PodMonitor port ${ep.port} is the agent's metrics port`);
  assert.equal(ep.path, agentSet.spec.template.metadata.annotations['prometheus.io/path']);
});

test('daemonset/ holds only Kubernetes objects, so `kubectl apply -f daemonset/` applies: monitoring extras live in daemonset/monitoring/', () => {
  const top = readdirSync(DIR, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
  assert.deepEqual(top.filter((f) => /\.(json|yml)$/.test(f)), [], 'kubectl reads .json and .yml too: a dashboard there fails the apply (apiVersion/kind not set)');
  assert.ok(existsSync(join(DIR, 'monitoring', 'weft-dashboard.json')));
});
