/**
 * `weft demo`: builds a throwaway sandbox (two nodes and their pods as network namespaces +
 * cgroups), runs a control plane and an agent per node on it, shows what happened (capture,
 * identities, the mTLS hop, plaintext capture, L7 authorization policy, `weft explain`, STRICT
 * mode, counters) and tears it all down, also on failure.
 *
 * Every outcome the demo claims is checked as it is shown (✓ or ✗); the exit code is 0 only when
 * all of them held.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, curl, tcpRequest, type LabNode, type LabPod, type CurlResult } from './sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from './sandbox/weft-agent';

const say = (s: string) => process.stdout.write(`${s}\n`);
const step = (s: string) => say(`\n== ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const APP_PORT = 8080;

/** The outcomes the demo shows, each checked; a ✗ line makes the demo fail. */
class Outcomes {
  readonly failed: string[] = [];
  shown = 0;
  /** Prints `text` marked ✓ when `held`, ✗ (with what was expected) when not. */
  check(held: boolean, text: string, expected?: string): boolean {
    this.shown++;
    if (held) say(`  ✓ ${text}`);
    else {
      say(`  ✗ ${text}${expected ? `  (expected ${expected})` : ''}`);
      this.failed.push(text);
    }
    return held;
  }
}

/** The application in pod api: answers every request with JSON and logs each one it sees on stdout. */
const APP = String.raw`
const [pod, port] = process.argv.slice(1);
const plain = (a) => String(a).replace(/^::ffff:/, '');
require('http').createServer((req, res) => {
  const seen = { method: req.method, url: req.url, remote: plain(req.socket.remoteAddress) };
  process.stdout.write(JSON.stringify(seen) + '\n');
  req.resume();
  req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ pod, ...seen })); });
}).listen(Number(port), '::', () => console.log('listening'));`;

interface Seen { method: string; url: string; remote: string }

interface App {
  /** every request the application saw, in order */
  readonly seen: Seen[];
  readonly ready: Promise<void>;
  /** waits (bounded) until the application logged a request matching `pred` */
  waitFor(pred: (s: Seen) => boolean): Promise<Seen | undefined>;
  stop(): void;
}

function startApp(pod: LabPod, port: number): App {
  const child: ChildProcess = pod.spawn(process.execPath, ['-e', APP, pod.name, String(port)]);
  const seen: Seen[] = [];
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the application in pod ${pod.namespace}/${pod.name} is not listening on ${port} after 5 s: ${err}`)), 5000);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the application in pod ${pod.namespace}/${pod.name} exited (${code}): ${err}`)); });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) {
        if (l === 'listening') { clearTimeout(timer); resolve(); } else if (l.trim()) seen.push(JSON.parse(l) as Seen);
      }
    });
  });
  ready.catch(() => undefined);
  return {
    seen,
    ready,
    async waitFor(pred) {
      for (let i = 0; i < 20; i++) {
        const hit = seen.find(pred);
        if (hit) return hit;
        await sleep(100);
      }
      return undefined;
    },
    stop: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); },
  };
}

/** The answer of the demo application, or undefined when the body is not its JSON (e.g. the proxy's 403). */
function appAnswer(r: CurlResult): Seen | undefined {
  try {
    return JSON.parse(r.body) as Seen;
  } catch {
    return undefined;
  }
}

/** A few fields of an access-log line, in a fixed order, for one readable line (`(none)` where the line has no such field). */
function logFields(l: Record<string, unknown>, fields: string[]): string {
  return JSON.stringify(Object.fromEntries(fields.map((f) => [f, l[f] ?? '(none)'])));
}

const authz = (name: string, spec: object) => ({ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' }, spec });

/** Service api declares 8080 as HTTP; web may GET it; nobody may POST under /admin/. */
const L7_OBJECTS = [
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' },
    spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [{ name: 'http', port: APP_PORT, targetPort: APP_PORT }] } },
  authz('allow-web-get', { selector: { matchLabels: { app: 'api' } }, action: 'ALLOW',
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }], to: [{ operation: { methods: ['GET'] } }] }] }),
  authz('deny-admin-post', { selector: { matchLabels: { app: 'api' } }, action: 'DENY',
    rules: [{ to: [{ operation: { ports: [String(APP_PORT)], methods: ['POST'], paths: ['/admin/*'] } }] }] }),
];

/** A Service with a cluster IP, its two versions, and a GAMMA HTTPRoute splitting it 80/20 with a canary header. */
const REVIEWS_VIP = '10.96.0.10';
const svc = (name: string, clusterIP: string, selector: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' },
  spec: { clusterIP, selector, ports: [{ name: 'http', port: 80, targetPort: APP_PORT }] } });
const CANARY_OBJECTS = [
  svc('reviews', REVIEWS_VIP, { app: 'api' }),
  svc('reviews-v1', '10.96.0.11', { app: 'api', version: 'v1' }),
  svc('reviews-v2', '10.96.0.12', { app: 'api', version: 'v2' }),
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'reviews', namespace: 'shop' }, spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 80 }],
    rules: [
      { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'reviews-v2', port: 80 }] },
      { backendRefs: [{ name: 'reviews-v1', port: 80, weight: 80 }, { name: 'reviews-v2', port: 80, weight: 20 }], retry: { attempts: 2, codes: [503] } },
    ] } },
];

const STRICT = { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } };

/** What each kernel counter means, for the counters step. */
const COUNTER_MEANING: Record<string, string> = {
  redirect4: 'connects of enrolled pods steered to the node proxy',
  flow_recorded: 'original destinations recorded for the proxy',
  orig_dst_answered: 'original destinations the proxy looked up',
  strict_pass_proxy: 'packets into STRICT pods sent by the node proxy: let through',
  strict_drop_syn: 'connection attempts into STRICT pods from outside the mesh: dropped',
  capture_listener: 'plaintext connections handed to the 15006 listener',
  capture_established: 'plaintext client segments handed to the proxy',
  capture_reply: 'pod replies handed back to the proxy',
};

interface Sandbox {
  lab: Lab;
  n1: LabNode;
  n2: LabNode;
  web: LabPod;
  legacy: LabPod;
  api: LabPod;
  /** version v2 of api, on the client's node */
  api2: LabPod;
  app: App;
  agents: AgentHandle[];
  /** applies these objects on top of the sandbox's Namespaces, Nodes and Pods (the file is watched) */
  apply(extra: object[]): void;
  outcomes: Outcomes;
}

export async function runDemo(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('weft demo builds network namespaces, cgroups and eBPF programs: run it as root');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'weft-demo-'));
  const lab = await Lab.create({ name: 'demo' });
  const processes: AgentHandle[] = [];
  const outcomes = new Outcomes();
  let app: App | undefined;
  let app2: App | undefined;
  say('Weft demo: a throwaway sandbox on this machine, the mesh running on it, and what it did.');
  say('Every outcome marked ✓ was checked as it was shown; a ✗ makes the demo exit 1.');
  try {
    step('sandbox: two nodes, four pods (network namespaces + veths + cgroups)');
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    const web = await n1.pod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    const legacy = await n1.pod('legacy', { namespace: 'legacy', labels: { app: 'legacy' } });
    const api = await n2.pod('api', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api', version: 'v1' } });
    const api2 = await n1.pod('api2', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api', version: 'v2' } });
    for (const p of [web, legacy, api, api2]) say(`  ${p.node.name}: pod ${p.namespace}/${p.name}  ip ${p.ip}`);
    say('  namespace shop has weft.dev/mesh=enabled; legacy does not');
    say(`  api runs a small HTTP application on ${APP_PORT} that logs every request it sees`);
    const config = join(dir, 'mesh.yaml');
    const dataDir = join(dir, 'data');
    const apply = (extra: object[]) => writeFileSync(config, lab.yaml({ meshNamespaces: ['shop'], extra }));
    apply([]);
    app = startApp(api, APP_PORT);
    app2 = startApp(api2, APP_PORT);
    await Promise.all([app.ready, app2.ready]);

    step(`weft controlplane on ${n1.name}, weft agent on each node`);
    const cp = startControlPlane(n1, config, dataDir);
    processes.push(cp);
    await cp.ready;
    const agents = [n1, n2].map((n) => startNodeAgent(n, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir));
    processes.push(...agents);
    await Promise.all(agents.map((a) => a.ready));
    say('  agents ready: eBPF programs attached to each node\'s cgroup tree; proxies on 15001 (outbound), 15008 (HBONE, mTLS) and 15006 (plaintext inbound)');

    const s: Sandbox = { lab, n1, n2, web, legacy, api, api2, app, agents, apply, outcomes };
    await showMeshHop(s);
    await showCanary(s);
    await showPlaintextCapture(s);
    const l7 = [...L7_OBJECTS];
    await showL7Policy(s, l7);
    await showLegacyDenied(s);
    await showExplain(s);
    await showStrict(s, [...l7, STRICT]);
    await showCounters(s);
    await showLiveSummary(s);
  } catch (e) {
    outcomes.check(false, `the demo stopped: ${(e as Error).message}`);
  } finally {
    step('teardown');
    app?.stop();
    app2?.stop();
    for (const p of processes.reverse()) await p.kill('SIGTERM');
    for (const n of lab.nodes) {
      const u = spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name], { encoding: 'utf8' });
      say(`  ${u.stdout.trim()}`);
    }
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
    say('  namespaces, cgroups and pins removed');
  }
  step('result');
  if (outcomes.failed.length === 0) {
    say(`  all ${outcomes.shown} outcomes shown above held`);
    return 0;
  }
  say(`  ${outcomes.failed.length} of ${outcomes.shown} outcomes did NOT hold:`);
  for (const f of outcomes.failed) say(`    ✗ ${f}`);
  return 1;
}

/** web → api across nodes: captured by the kernel, carried over mTLS between the node proxies. */
async function showMeshHop({ n1, n2, web, api, agents, outcomes }: Sandbox): Promise<void> {
  step(`curl from shop/web (${n1.name}) to shop/api (${n2.name}): an unmodified client in an enrolled pod`);
  const r = await curl(web, `http://${api.ip}:${APP_PORT}/orders`);
  const seen = appAnswer(r);
  // The node proxies carried it (the access-log lines below show both hops); api still sees web's own address (source preserved).
  outcomes.check(r.status === 200 && seen !== undefined && seen.remote === web.ip,
    `HTTP ${r.status}; api saw the connection come from ${seen?.remote ?? '?'}: web's own address, as without the mesh`, `HTTP 200 seen from web (${web.ip})`);
  const out = await agents[0]!.waitForLog((l) => l['dst.addr'] === `${api.ip}:${APP_PORT}`);
  const inb = await agents[1]!.waitForLog((l) => l.direction === 'inbound' && l['src.identity'] !== undefined);
  outcomes.check(out['src.identity'] === 'spiffe://cluster.local/ns/shop/sa/web' && out['dst.hbone_addr'] === `${n2.ip}:15008`,
    `${n1.name} access log (outbound): ${JSON.stringify({ src: out['src.identity'], dst: out['dst.identity'], via: out['dst.hbone_addr'] })}, ${n2.name}'s HBONE port (mTLS)`);
  outcomes.check(inb['src.identity'] === 'spiffe://cluster.local/ns/shop/sa/web',
    `${n2.name} access log (inbound):  source principal verified from its certificate: ${String(inb['src.identity'])}`);
}

/** web → the Service reviews' cluster IP: resolved, routed and balanced by web's node proxy. */
async function showCanary({ n1, web, api, api2, agents, apply, outcomes }: Sandbox): Promise<void> {
  step(`Service traffic: shop/reviews (cluster IP ${REVIEWS_VIP}) and a Gateway API HTTPRoute on it`);
  say('  reviews-v1 = api (version v1, on the other node), reviews-v2 = api2 (version v2, on web\'s node)');
  say('  HTTPRoute reviews: header x-canary: yes → reviews-v2; otherwise 80 % reviews-v1, 20 % reviews-v2, retry 503 twice');
  apply(CANARY_OBJECTS);
  const count = async (n: number, args: string[]): Promise<Record<string, number>> => {
    const urls = Array.from({ length: n }, (_, i) => `http://${REVIEWS_VIP}/reviews/${i}`);
    const r = await web.exec('curl', ['-s', '--max-time', '10', ...args, ...urls], { timeoutMs: 15_000 });
    const pods: Record<string, number> = {};
    for (const m of r.stdout.matchAll(/"pod":"([a-z0-9-]+)"/g)) pods[m[1]!] = (pods[m[1]!] ?? 0) + 1;
    return pods;
  };
  // The route is in force once a canary request lands on v2 (the config file is watched).
  let canary: Record<string, number> = {};
  for (let i = 0; i < 50 && canary[api2.name] !== 5; i++) {
    canary = await count(5, ['-H', 'x-canary: yes']);
    if (canary[api2.name] !== 5) await new Promise((r) => setTimeout(r, 100));
  }
  outcomes.check(canary[api2.name] === 5, `5 requests with x-canary: yes → ${JSON.stringify(canary)}: all on v2`);
  const split = await count(100, []);
  const v2 = split[api2.name] ?? 0;
  outcomes.check((split[api.name] ?? 0) + v2 === 100 && v2 >= 8 && v2 <= 35,
    `100 requests without the header (one curl, keep-alive) → ${JSON.stringify(split)}: about 80/20, each request balanced on its own`, '80/20 split');
  const line = await agents[0]!.waitForLog((l) => l['dst.service'] === 'reviews.shop.svc.cluster.local' && l.route !== undefined && l.upstream !== undefined);
  outcomes.check(line.route === 'shop/reviews[0]' || line.route === 'shop/reviews[1]',
    `${n1.name} access log (source side): ${logFields(line, ['dst.service', 'route', 'upstream', 'status', 'retries'])}`);
  apply([]);
}

/** legacy (outside the mesh) → api: captured on api's node at 15006, api still sees legacy's own address. */
async function showPlaintextCapture({ n2, legacy, api, agents, outcomes }: Sandbox): Promise<void> {
  step('curl from legacy/legacy (namespace not in the mesh, so no identity) to shop/api');
  const r = await curl(legacy, `http://${api.ip}:${APP_PORT}/orders`);
  const seen = appAnswer(r);
  outcomes.check(r.status === 200 && seen?.remote === legacy.ip,
    `HTTP ${r.status}; api saw ${seen?.remote ?? '?'}: legacy's own address`, `HTTP 200 seen from ${legacy.ip}`);
  const line = await agents[1]!.waitForLog((l) => String(l['src.addr']).startsWith(`${legacy.ip}:`));
  outcomes.check(line['src.identity'] === undefined,
    `yet ${n2.name}'s proxy carried it (plaintext capture on 15006, no principal, PERMISSIVE lets it in): ${logFields(line, ['src.addr', 'src.identity', 'dst.addr', 'decision'])}`);
}

/** The L7 policy: web may GET, POST /admin/* is denied with 403 by the proxy; the application sees nothing of it. */
async function showL7Policy(s: Sandbox, objects: object[]): Promise<void> {
  const { n2, web, api, app, agents, outcomes } = s;
  step('L7 authorization: Service api declares port 8080 as http, and two AuthorizationPolicies in namespace shop');
  say('  Service shop/api                        port 8080 named "http": the proxy parses HTTP on it');
  say('  AuthorizationPolicy shop/allow-web-get   ALLOW  GET  from cluster.local/ns/shop/sa/web  to app=api');
  say('  AuthorizationPolicy shop/deny-admin-post DENY   POST /admin/* on port 8080                to app=api');
  say('  (with an ALLOW policy in force, anything no ALLOW rule matches is denied)');
  s.apply(objects);
  await untilEnforced(n2, ['shop/web', `shop/api:${APP_PORT}`, 'POST', '/admin/users'], 'DENY');
  const since = app.seen.length;

  const get = await curl(web, `http://${api.ip}:${APP_PORT}/orders`);
  outcomes.check(get.status === 200 && appAnswer(get) !== undefined, `web GET /orders → HTTP ${get.status}`, 'HTTP 200 from api');
  const post = await curl(web, `http://${api.ip}:${APP_PORT}/admin/users`, { args: ['-X', 'POST', '-d', 'name=eve'] });
  outcomes.check(post.status === 403 && post.body === 'RBAC: access denied',
    `web POST /admin/users → HTTP ${post.status} ${JSON.stringify(post.body)}, answered by ${n2.name}'s proxy`, 'HTTP 403 "RBAC: access denied"');
  const line = await agents[1]!.waitForLog((l) => l.path === '/admin/users');
  outcomes.check(line.status === 403 && line.decision === 'deny' && line.policy === 'shop/deny-admin-post[0]',
    `${n2.name} access log: ${logFields(line, ['src.identity', 'method', 'path', 'status', 'decision', 'policy'])}`, 'status 403, decision deny, policy shop/deny-admin-post[0]');
  await app.waitFor((x) => x.url === '/orders' && x.remote !== s.legacy.ip && app.seen.indexOf(x) >= since);
  const after = app.seen.slice(since);
  outcomes.check(after.some((x) => x.method === 'GET' && x.url === '/orders') && !after.some((x) => x.url === '/admin/users'),
    `api's own log since the policy: ${after.map((x) => `${x.method} ${x.url}`).join(', ') || 'nothing'}; nothing of POST /admin/users`);
}

/** legacy → api under the policy: captured, judged with no principal, denied by default. */
async function showLegacyDenied({ n2, legacy, api, app, agents, outcomes }: Sandbox): Promise<void> {
  step('curl from legacy/legacy to shop/api under the policy');
  const since = app.seen.length;
  const r = await curl(legacy, `http://${api.ip}:${APP_PORT}/orders`);
  outcomes.check(r.status === 403 && r.body === 'RBAC: access denied',
    `legacy GET /orders → HTTP ${r.status} ${JSON.stringify(r.body)}: captured on ${n2.name} (15006) and judged with no principal; no rule of allow-web-get matches a plaintext client`,
    'HTTP 403 "RBAC: access denied"');
  const line = await agents[1]!.waitForLog((l) => String(l['src.addr']).startsWith(`${legacy.ip}:`) && l.path === '/orders' && l.status === 403);
  outcomes.check(line.decision === 'deny' && line['src.identity'] === undefined,
    `${n2.name} access log: ${logFields(line, ['src.addr', 'src.identity', 'method', 'path', 'status', 'decision'])}`);
  const fromLegacy = app.seen.slice(since).filter((x) => x.remote === legacy.ip);
  outcomes.check(fromLegacy.length === 0, `api's own log shows ${fromLegacy.length} request(s) from legacy (${legacy.ip}) since the policy`);
}

/** `weft explain` on api's node: asks that node's agent why, and prints its answer as is. */
async function showExplain({ n2, outcomes }: Sandbox): Promise<void> {
  step(`weft explain: ask the agent on ${n2.name} (admin API 127.0.0.1:15000) what it decides and why`);
  const questions: Array<{ args: string[]; first: string[] }> = [
    { args: ['legacy/legacy', `shop/api:${APP_PORT}`, 'GET', '/orders'], first: ['DENY'] },
    { args: ['shop/web', `shop/api:${APP_PORT}`, 'POST', '/admin/users'], first: ['DENY', 'policy shop/deny-admin-post rule 0'] },
    { args: ['shop/web', `shop/api:${APP_PORT}`, 'GET', '/orders'], first: ['ALLOW', 'policy shop/allow-web-get rule 0'] },
  ];
  for (const q of questions) await showExplainAnswer(n2, q.args, q.first, outcomes);
}

/** Prints `$ weft explain ARGS` and the agent's answer as is; checks its first lines. */
async function showExplainAnswer(node: LabNode, args: string[], first: string[], outcomes: Outcomes): Promise<void> {
  say(`  $ weft explain ${args.join(' ')}`);
  const r = await weftExplain(node, args);
  for (const l of (r.stdout + r.stderr).trimEnd().split('\n')) say(`    ${l}`);
  const got = r.stdout.split('\n').slice(0, first.length);
  outcomes.check(JSON.stringify(got) === JSON.stringify(first), `the agent answers ${first.join(', ')}`, `first lines ${JSON.stringify(first)}, got ${JSON.stringify(got)}`);
}

/** STRICT: the enrolled pod accepts only what the node proxy delivers; legacy is dropped in the kernel. */
async function showStrict(s: Sandbox, objects: object[]): Promise<void> {
  const { legacy, web, api, outcomes } = s;
  step('PeerAuthentication STRICT in namespace shop (the policies stay in force)');
  s.apply(objects);
  let blocked = false;
  for (let i = 0; i < 20 && !blocked; i++) {
    const t = await tcpRequest(legacy, api.ip, APP_PORT, { payload: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 1000 }).catch(() => ({ code: -1 }));
    blocked = t.code !== 0;
  }
  outcomes.check(blocked, `legacy → api: ${blocked ? 'blocked: its SYN is dropped on api\'s host-side interface, no proxy involved' : 'STILL REACHES api'}`, 'blocked');
  await showExplainAnswer(s.n2, ['legacy/legacy', `shop/api:${APP_PORT}`], ['DENY'], outcomes);
  const again = await curl(web, `http://${api.ip}:${APP_PORT}/orders`);
  outcomes.check(again.status === 200, `web GET /orders through the mesh: HTTP ${again.status}`, 'HTTP 200');
}

/** What the kernel programs counted on each node, and the workload certificates on n1. */
async function showCounters({ n1, n2, outcomes }: Sandbox): Promise<void> {
  step('what the kernel programs counted (admin API /redirect), non-zero counters only');
  const counts = new Map<LabNode, Record<string, string>>();
  for (const n of [n1, n2]) {
    const r = await n.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 });
    const c = (JSON.parse(r.stdout) as { counters: Record<string, string> }).counters;
    counts.set(n, c);
    say(`  ${n.name}:`);
    for (const [k, v] of Object.entries(c)) if (v !== '0') say(`    ${k.padEnd(20)} ${v.padStart(4)}  ${COUNTER_MEANING[k] ?? ''}`);
  }
  const c1 = counts.get(n1)!;
  const c2 = counts.get(n2)!;
  outcomes.check(Number(c1.redirect4) > 0, `${n1.name} steered web's connects to its proxy (redirect4 = ${c1.redirect4})`);
  outcomes.check(Number(c2.capture_listener) > 0, `${n2.name} captured legacy's plaintext connections on 15006 (capture_listener = ${c2.capture_listener})`);
  outcomes.check(Number(c2.strict_drop_syn) > 0, `${n2.name} dropped legacy's SYNs under STRICT (strict_drop_syn = ${c2.strict_drop_syn})`);
  const certs = await n1.exec('curl', ['-s', 'http://127.0.0.1:15000/certs'], { timeoutMs: 5000 });
  say(`  ${n1.name} workload certificates: ${JSON.stringify(JSON.parse(certs.stdout).map((c: { identity: string; notAfter: string }) => `${c.identity} until ${c.notAfter}`))}`);
}

/** The live view each agent kept while the demo ran (what `weft top` and the page at 127.0.0.1:15000/live show). */
async function showLiveSummary({ n1, n2, outcomes }: Sandbox): Promise<void> {
  step('live summary: requests per pod pair, mTLS and denials, as each agent saw them (weft top --once)');
  const tops = new Map<LabNode, string>();
  for (const n of [n1, n2]) {
    const r = await n.exec(process.execPath, [WEFT_CLI, 'top', '--once', '--limit', '8'], { timeoutMs: 10_000 });
    tops.set(n, r.stdout);
    say((r.code === 0 ? r.stdout : `weft top failed: ${r.stderr}`).trimEnd().replace(/^/gm, '  '));
  }
  const t2 = tops.get(n2)!;
  outcomes.check(/^shop\/web\s+shop\/api\s+mTLS\s/m.test(t2), `${n2.name} shows web → api over mTLS`);
  outcomes.check(/by shop\/deny-admin-post$/m.test(t2), `${n2.name} lists web's denied POST with its policy shop/deny-admin-post`);
  say('  (on a node: weft top refreshes this table; weft status --web prints the address of the live page)');
}

function weftExplain(node: LabNode, args: string[]) {
  return node.exec(process.execPath, [WEFT_CLI, 'explain', ...args], { timeoutMs: 5000 });
}

/** Waits (bounded, 10 s) until the agent on `node` answers `expect` for this question: the new config is in force there. */
async function untilEnforced(node: LabNode, args: string[], expect: 'ALLOW' | 'DENY'): Promise<void> {
  let last = '';
  for (let i = 0; i < 100; i++) {
    const r = await weftExplain(node, args);
    last = r.stdout + r.stderr;
    if (last.startsWith(expect)) return;
    await sleep(100);
  }
  throw new Error(`the agent on ${node.name} did not take the new policy within 10 s (weft explain ${args.join(' ')} said: ${last.trim()}); check its log for a rejected object`);
}
