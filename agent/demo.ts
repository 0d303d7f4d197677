/**
 * `weft demo`: builds a throwaway sandbox (two nodes and their pods as network namespaces +
 * cgroups), runs a control plane and an agent per node on it, shows what happened (capture,
 * identities, the mTLS hop, STRICT mode, counters) and tears it all down, also on failure.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, curl, startHttpServer, tcpRequest } from './sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from './sandbox/weft-agent';

const say = (s: string) => process.stdout.write(`${s}\n`);
const step = (s: string) => say(`\n== ${s}`);

export async function runDemo(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('weft demo builds network namespaces, cgroups and eBPF programs: run it as root');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'weft-demo-'));
  const lab = await Lab.create({ name: 'demo' });
  const processes: AgentHandle[] = [];
  try {
    step('sandbox: two nodes, three pods (network namespaces + veths + cgroups)');
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    const web = await n1.pod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    const legacy = await n1.pod('legacy', { namespace: 'legacy', labels: { app: 'legacy' } });
    const api = await n2.pod('api', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } });
    for (const p of [web, legacy, api]) say(`  ${p.node.name}: pod ${p.namespace}/${p.name}  ip ${p.ip}`);
    say('  namespace shop has weft.dev/mesh=enabled; legacy does not');
    const config = join(dir, 'mesh.yaml');
    const dataDir = join(dir, 'data');
    const extra: object[] = [];
    const write = () => writeFileSync(config, lab.yaml({ meshNamespaces: ['shop'], extra }));
    write();
    const server = startHttpServer(api, 8080);
    await server.ready;

    step(`weft controlplane on ${n1.name}, weft agent on each node`);
    const cp = startControlPlane(n1, config, dataDir);
    processes.push(cp);
    await cp.ready;
    const agents = [n1, n2].map((n) => startNodeAgent(n, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir));
    processes.push(...agents);
    await Promise.all(agents.map((a) => a.ready));
    say('  agents ready: eBPF programs attached to each node\'s cgroup tree, proxies on 15001 (outbound) and 15008 (HBONE)');

    step(`curl from shop/web (${n1.name}) to shop/api (${n2.name}): an unmodified client in an enrolled pod`);
    const r = await curl(web, `http://${api.ip}:8080/orders`);
    say(`  HTTP ${r.status}; api saw the connection come from ${JSON.parse(r.body).remoteAddress}, not from web (${web.ip}): the node proxies carried it`);
    const out = await agents[0]!.waitForLog((l) => l['dst.addr'] === `${api.ip}:8080`);
    say(`  ${n1.name} access log (outbound): ${JSON.stringify({ src: out['src.identity'], dst: out['dst.identity'], via: out['dst.hbone_addr'] })}`);
    const inb = await agents[1]!.waitForLog((l) => l.direction === 'inbound');
    say(`  ${n2.name} access log (inbound):  source principal verified from its certificate: ${String(inb['src.identity'])}`);

    step('curl from legacy/legacy (namespace not in the mesh)');
    const l1 = await curl(legacy, `http://${api.ip}:8080/orders`);
    say(`  HTTP ${l1.status}; api saw ${JSON.parse(l1.body).remoteAddress}: legacy's own address, not captured (PERMISSIVE)`);

    step('PeerAuthentication STRICT in namespace shop');
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    write();
    let blocked = false;
    for (let i = 0; i < 20 && !blocked; i++) {
      const t = await tcpRequest(legacy, api.ip, 8080, { payload: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 1000 }).catch(() => ({ code: -1 }));
      blocked = t.code !== 0;
    }
    say(`  legacy → api: ${blocked ? 'blocked (its SYN is dropped on api\'s host-side interface)' : 'STILL REACHES api (unexpected)'}`);
    const again = await curl(web, `http://${api.ip}:8080/orders`);
    say(`  web → api through the mesh: HTTP ${again.status}`);

    step(`what ${n2.name}'s kernel programs counted (admin API /redirect)`);
    const counters = await n2.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 });
    say(`  ${JSON.stringify(JSON.parse(counters.stdout).counters)}`);
    const certs = await n1.exec('curl', ['-s', 'http://127.0.0.1:15000/certs'], { timeoutMs: 5000 });
    say(`  ${n1.name} workload certificates: ${JSON.stringify(JSON.parse(certs.stdout).map((c: { identity: string; notAfter: string }) => `${c.identity} until ${c.notAfter}`))}`);
    await server.stop();
    return blocked && again.status === 200 && r.status === 200 ? 0 : 1;
  } finally {
    step('teardown');
    for (const p of processes.reverse()) await p.kill('SIGTERM');
    for (const n of lab.nodes) {
      const u = spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name], { encoding: 'utf8' });
      say(`  ${u.stdout.trim()}`);
    }
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
    say('  namespaces, cgroups and pins removed');
  }
}
