/**
 * Authorization policy and HTTP in the node proxy, end to end on real namespaces: two nodes, a
 * control plane and an agent per node. Every path into a meshed pod is judged: HBONE from another
 * node, the same-node route, and plaintext clients outside the mesh captured on 15006. Denied
 * requests get 403 from the proxy and the application's own log shows nothing of them; `weft
 * explain` agrees with what the proxy did.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { APP_SERVER, GRPC_CLIENT, H2_UPLOAD, HOLD_CLIENT, RAW_CLIENT, SERVER_FIRST_CLIENT, WS_CLIENT } from '../support/mesh-apps';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING policy end-to-end tests: ${blocker} ***\n\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GRPC_JS = dirname(require.resolve('@grpc/grpc-js/package.json'));

interface AppLine { pod: string; ev: string; method?: string; url?: string; remote?: string; port?: number }

/** The application in a pod, with everything it logged. */
class App {
  readonly lines: AppLine[] = [];
  readonly ready: Promise<void>;
  private readonly child: ChildProcess;
  constructor(pod: LabPod) {
    this.child = pod.spawn(process.execPath, ['-e', APP_SERVER, pod.name, GRPC_JS]);
    let out = '';
    let err = '';
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`app in ${pod.name} not listening after 8 s: ${err}`)), 8000);
      this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const lines = out.split('\n');
        out = lines.pop()!;
        for (const l of lines) {
          if (l === 'listening') { clearTimeout(timer); resolve(); } else if (l.trim()) this.lines.push(JSON.parse(l) as AppLine);
        }
      });
    });
  }
  saw(pred: (l: AppLine) => boolean): AppLine[] {
    return this.lines.filter(pred);
  }
}

const policy = (name: string, spec: object) => ({ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' }, spec });
const API = { matchLabels: { app: 'api' } };

describe('authorization policy and HTTP in the node proxy', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode;
  let web: LabPod, bot: LabPod, api1: LabPod, outsider: LabPod, api: LabPod, outsider2: LabPod;
  let app: App, app1: App;
  let cp: AgentHandle, agent1: AgentHandle, agent2: AgentHandle;
  let dir: string, configPath: string;
  const policies = new Map<string, object>();
  const config = () => lab.yaml({
    meshNamespaces: ['shop'],
    extra: [{
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' },
      spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [
        { name: 'http', port: 8080, targetPort: 8080 },
        { name: 'tcp-echo', port: 7000, targetPort: 7000 },
        { name: 'h2', port: 8443, targetPort: 8443, appProtocol: 'kubernetes.io/h2c' },
        { name: 'grpc', port: 8444, targetPort: 8444 },
        { name: 'mail', port: 2525, targetPort: 2525 },
      ] },
    }, ...policies.values()],
  });
  /** Writes the config and waits (bounded) until both agents enforce it, asking each agent's /explain. */
  const enforce = async (check: { src: string; dst: string; req?: [string, string]; expect: 'ALLOW' | 'DENY' }) => {
    writeFileSync(configPath, config());
    for (const node of [n1, n2]) {
      let last = '';
      for (let i = 0; i < 100; i++) {
        last = (await explain(node, [check.src, check.dst, ...(check.req ?? [])])).stdout;
        if (last.startsWith(check.expect)) break;
        await sleep(100);
      }
      assert.ok(last.startsWith(check.expect), `agent on ${node.name} did not take the new policy: ${last}`);
    }
  };
  const explain = (node: LabNode, args: string[]) => node.exec(process.execPath, [WEFT_CLI, 'explain', ...args], { timeoutMs: 5000 });
  const run = async (pod: LabPod, script: string, args: string[], timeoutMs = 20_000) => {
    const r = await pod.exec(process.execPath, ['-e', script, ...args], { timeoutMs });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    return r.stdout.trim();
  };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'authz' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    web = await n1.pod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    bot = await n1.pod('bot', { namespace: 'shop', serviceAccount: 'bot', labels: { app: 'bot' } });
    api1 = await n1.pod('api1', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } });
    outsider = await n1.pod('outsider', { namespace: 'legacy' });
    api = await n2.pod('api', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } });
    outsider2 = await n2.pod('outsider2', { namespace: 'legacy' });
    dir = mkdtempSync(join(tmpdir(), 'weft-authz-'));
    configPath = join(dir, 'mesh.yaml');
    policies.set('deny-admin-post', policy('deny-admin-post', { selector: API, action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'], methods: ['POST'], paths: ['/admin/*'] } }] }] }));
    // (Scoped to the HTTP port: on a TCP connection Istio's rule drops a DENY rule's HTTP-only fields and keeps the rest, so unscoped it would deny every TCP port.)
    policies.set('deny-bot', policy('deny-bot', { selector: API, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/bot'] } }] }] }));
    policies.set('deny-outsider', policy('deny-outsider', { selector: API, action: 'DENY', rules: [{ from: [{ source: { ipBlocks: [`${outsider.ip}/32`] } }] }] }));
    writeFileSync(configPath, config());
    app = new App(api);
    app1 = new App(api1);
    await Promise.all([app.ready, app1.ready]);
    const dataDir = join(dir, 'data');
    cp = startControlPlane(n1, configPath, dataDir);
    await cp.ready;
    agent1 = startNodeAgent(n1, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    agent2 = startNodeAgent(n2, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    await Promise.all([agent1.ready, agent2.ready]);
  });

  after(async () => {
    if (blocker) return;
    if (process.env.WEFT_E2E_DUMP) writeFileSync(process.env.WEFT_E2E_DUMP, JSON.stringify({ a1: agent1?.accessLog, a2: agent2?.accessLog, e1: agent1?.stderr(), e2: agent2?.stderr(), app: app?.lines }, null, 1));
    for (const p of [agent1, agent2, cp]) await p?.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [where, target] of [['across nodes', () => api], ['on one node', () => api1]] as const) {
    test(`${where}: GET is allowed and POST /admin/* gets 403 from the proxy, the connection stays usable, the application sees nothing of it`, async () => {
      const dst = target();
      const seen = dst === api ? app : app1;
      const get = await curl(web, `http://${dst.ip}:8080/admin/report`);
      assert.equal(get.status, 200, get.stderr);
      // Denied, then a second request on the same connection (curl --next reuses it): num_connects 0.
      const r = await web.exec('curl', ['-sS', '--max-time', '5', '-w', '\n%{http_code} %{num_connects}\n', '-X', 'POST', `http://${dst.ip}:8080/admin/drop`,
        '--next', '-sS', '--max-time', '5', '-w', '\n%{http_code} %{num_connects}\n', `http://${dst.ip}:8080/after-deny`], { timeoutMs: 8000 });
      const out = r.stdout.split('\n');
      assert.equal(out[0], 'RBAC: access denied', r.stdout);
      assert.equal(out[1], '403 1', r.stdout);
      assert.match(out[3] ?? '', /^200 0$/, `the second request reused the connection: ${r.stdout}`);
      const post = await curl(web, `http://${dst.ip}:8080/orders`, { args: ['-X', 'POST', '-d', 'x=1'] });
      assert.equal(post.status, 200, 'POST elsewhere is allowed');
      assert.equal(seen.saw((l) => l.url === '/admin/drop').length, 0, 'the application saw the denied request');
      assert.equal(seen.saw((l) => l.url === '/after-deny').length, 1);
      const node = dst.node === n1 ? agent1 : agent2;
      const line = await node.waitForLog((l) => l.path === '/admin/drop' && l.status === 403);
      assert.equal(line.decision, 'deny');
      assert.equal(line.policy, 'shop/deny-admin-post[0]');
      assert.equal(line.method, 'POST');
      const ex = await explain(n1, ['shop/web', `shop/${dst.name}:8080`, 'POST', '/admin/drop']);
      assert.equal(ex.stdout.split('\n')[0], 'DENY', ex.stdout + ex.stderr);
      assert.equal(ex.stdout.split('\n')[1], 'policy shop/deny-admin-post rule 0');
      const ok = await explain(n1, ['shop/web', `shop/${dst.name}:8080`, 'GET', '/admin/report']);
      assert.deepEqual(ok.stdout.split('\n').slice(0, 2), ['ALLOW', 'no policy']);
    });

    test(`${where}: other spellings of /admin/* are denied too (the path is normalized first), and the application gets the normalized path`, async () => {
      const dst = target();
      const seen = dst === api ? app : app1;
      for (const path of ['/./admin/drop2', '/x/../admin/drop2', '/%61dmin/drop2', '/admin/%2e/drop2', '/admin\\drop2']) {
        const r = await curl(web, `http://${dst.ip}:8080${path}`, { args: ['--path-as-is', '-X', 'POST'] });
        assert.equal(r.status, 403, `POST ${path}: ${r.body} ${r.stderr}`);
      }
      assert.equal(seen.saw((l) => typeof l.url === 'string' && l.url.includes('drop2')).length, 0, 'the application saw a denied request');
      const node = dst.node === n1 ? agent1 : agent2;
      const line = await node.waitForLog((l) => l.path === '/admin/drop2' && l.status === 403);
      assert.equal(line.policy, 'shop/deny-admin-post[0]');
      assert.match(String(line.original_path), /drop2$/, 'the line keeps the path as sent');
      assert.notEqual(line.original_path, '/admin/drop2');
      const ok = await curl(web, `http://${dst.ip}:8080/a/./b/../%7Ereport?back=/../x`, { args: ['--path-as-is', '-X', 'POST'] });
      assert.equal(ok.status, 200, ok.stderr);
      assert.equal(seen.saw((l) => l.url === '/a/~report?back=/../x').length, 1, JSON.stringify(seen.lines.slice(-3)));
    });
  }

  test('a principal is denied and another allowed, on HTTP and on TCP; explain agrees', async () => {
    const denied = await curl(bot, `http://${api.ip}:8080/from-bot`);
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'RBAC: access denied');
    const allowed = await curl(web, `http://${api.ip}:8080/from-web`);
    assert.equal(allowed.status, 200);
    const tcp = await bot.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify('hello\n')], { timeoutMs: 6000 });
    assert.equal(JSON.parse(tcp.stdout.trim()), '', 'the TCP connection from the denied principal was closed without an echo');
    const echo = await web.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify('hello\n')], { timeoutMs: 6000 });
    assert.equal(JSON.parse(echo.stdout.trim()), 'hello\n');
    assert.equal(app.saw((l) => l.url === '/from-bot').length, 0);
    const ex = await explain(n2, ['shop/bot', 'shop/api:7000']);
    assert.deepEqual(ex.stdout.split('\n').slice(0, 2), ['DENY', 'policy shop/deny-bot rule 0'], ex.stdout + ex.stderr);
    const exWeb = await explain(n2, ['shop/web', 'shop/api:7000']);
    assert.deepEqual(exWeb.stdout.split('\n').slice(0, 2), ['ALLOW', 'no policy']);
  });

  test('plaintext clients outside the mesh are captured: an ipBlocks DENY refuses one, another is allowed with its own address; explain agrees', async () => {
    const denied = await curl(outsider, `http://${api.ip}:8080/from-outsider`);
    assert.equal(denied.status, 403, `${denied.status} ${denied.stderr}`);
    const tcp = await outsider.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify('hi\n')], { timeoutMs: 6000 });
    assert.equal(JSON.parse(tcp.stdout.trim()), '');
    const allowed = await curl(outsider2, `http://${api.ip}:8080/from-outsider2`);
    assert.equal(allowed.status, 200, allowed.stderr);
    assert.equal(JSON.parse(allowed.body).remote, outsider2.ip, 'the pod sees its client\'s own address');
    assert.equal(app.saw((l) => l.remote === outsider.ip).length, 0, 'the application saw nothing from the denied client');
    const line = await agent2.waitForLog((l) => l.path === '/from-outsider');
    assert.equal(line.status, 403);
    assert.equal(line['src.identity'], undefined, 'a plaintext client has no principal');
    const ex = await explain(n2, [outsider.ip, 'shop/api:8080', 'GET', '/from-outsider']);
    assert.deepEqual(ex.stdout.split('\n').slice(0, 2), ['DENY', 'policy shop/deny-outsider rule 0'], ex.stdout + ex.stderr);
    const ex2 = await explain(n2, ['legacy/outsider2', 'shop/api:8080', 'GET', '/']);
    assert.equal(ex2.stdout.split('\n')[0], 'ALLOW');
  });

  test('a policy change closes an established TCP connection it now denies, and refuses new ones', async () => {
    const holder = web.spawn(process.execPath, ['-e', HOLD_CLIENT, api.ip, '7000']);
    let out = '';
    holder.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<void>((r) => holder.once('exit', () => r()));
    for (let i = 0; i < 50 && !out.includes('open'); i++) await sleep(100);
    assert.ok(out.includes('open'), `the connection did not open: ${out}`);
    policies.set('deny-echo', policy('deny-echo', { selector: API, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }], to: [{ operation: { ports: ['7000'] } }] }] }));
    try {
      await enforce({ src: 'shop/web', dst: 'shop/api:7000', expect: 'DENY' });
      await exited;
      assert.match(out, /closed \d+/, `the established connection was not closed: ${out}`);
      const again = await web.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify('x\n')], { timeoutMs: 6000 });
      assert.equal(JSON.parse(again.stdout.trim()), '');
      const ex = await explain(n1, ['shop/web', 'shop/api:7000']);
      assert.deepEqual(ex.stdout.split('\n').slice(0, 2), ['DENY', 'policy shop/deny-echo rule 0']);
      const closed = await agent2.waitForLog((l) => typeof l.error === 'string' && l.error.includes('policy now denies'));
      assert.equal(closed['dst.addr'], `${api.ip}:7000`);
    } finally {
      policies.delete('deny-echo');
      await enforce({ src: 'shop/web', dst: 'shop/api:7000', expect: 'ALLOW' });
    }
  });

  test('HTTP/2 across nodes: a 100 MiB streamed body arrives whole and trailers come back', async () => {
    const r = JSON.parse(await run(web, H2_UPLOAD, [api.ip, '100'], 60_000));
    assert.equal(r.status, 200);
    assert.equal(r.body, `got ${100 * 1048576}`);
    assert.equal(r.trailers['x-body-sha256'], r.sent, 'the body arrived byte-exact');
  });

  test('gRPC across nodes: unary, server streaming with trailing metadata, and an error status', async () => {
    const r = JSON.parse(await run(web, GRPC_CLIENT, [GRPC_JS, api.ip]));
    assert.deepEqual(r.hello, { hello: 'weft', pod: 'api' });
    assert.deepEqual(r.count, { items: [0, 1, 2, 3, 4], code: 0, trailer: '5' });
    assert.deepEqual(r.fail, { code: 7, details: 'not you' });
  });

  test('a server-first protocol on an undeclared port works through the proxy (sniffing gives up within its bound)', async () => {
    for (const client of [web, outsider2]) {
      const lines = JSON.parse(await run(client, SERVER_FIRST_CLIENT, [api.ip, '2525']));
      assert.deepEqual(lines, ['220 api ESMTP ready', '250 HELO weft']);
    }
  });

  test('a WebSocket passes through the proxy', async () => {
    const r = JSON.parse(await run(web, WS_CLIENT, [api.ip, '8080', 'hi']));
    assert.equal(r.status, 'HTTP/1.1 101 Switching Protocols');
    assert.equal(r.frame, 'echo:hi');
  });

  test('malformed and smuggling requests get 400 from the proxy and never reach the application', async () => {
    const cases: Array<[string, string]> = [
      ['CL and TE', 'POST /bad-clte HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
      ['two CL', 'POST /bad-2cl HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
      ['obs-fold', 'GET /bad-fold HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n'],
      ['bad header name', 'GET /bad-name HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n'],
      ['bad request line', 'GET /bad line HTTP/1.1\r\nHost: a\r\n\r\n'],
    ];
    for (const [name, raw] of cases) {
      const got = JSON.parse(await run(web, RAW_CLIENT, [api.ip, '8080', JSON.stringify(raw)]));
      assert.match(got, /^HTTP\/1\.1 400 /, `${name}: ${got}`);
    }
    const big = `GET /bad-big HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(80 * 1024)}\r\n\r\n`;
    assert.match(JSON.parse(await run(web, RAW_CLIENT, [api.ip, '8080', JSON.stringify(big)])), /^HTTP\/1\.1 431 /);
    // A request smuggled in the body of a request the proxy accepted stays body.
    const inner = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n';
    const smuggle = `POST /carrier HTTP/1.1\r\nHost: a\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`;
    await run(web, RAW_CLIENT, [api.ip, '8080', JSON.stringify(smuggle)]);
    await sleep(300);
    assert.equal(app.saw((l) => typeof l.url === 'string' && l.url.startsWith('/bad')).length, 0, JSON.stringify(app.lines.filter((l) => l.url?.startsWith('/bad'))));
    assert.equal(app.saw((l) => l.url === '/smuggled').length, 0);
  });

  test('explain --config answers offline from the file, the same as the running agent', async () => {
    const r = spawnSync(process.execPath, [WEFT_CLI, 'explain', '--config', configPath, 'shop/web', 'shop/api:8080', 'POST', '/admin/x'], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.deepEqual(r.stdout.split('\n').slice(0, 2), ['DENY', 'policy shop/deny-admin-post rule 0']);
    const online = await explain(n1, ['shop/web', 'shop/api:8080', 'POST', '/admin/x']);
    assert.equal(online.stdout, r.stdout);
  });
});
