/**
 * `weft demo`: builds a throwaway sandbox (a node and pods as network namespaces + cgroups), runs
 * the mesh on it with `weft local`, shows what happened, and tears it all down, also on failure.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, curl, startHttpServer, tcpRequest } from '../test/harness';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../test/harness/weft-agent';

const say = (s: string) => process.stdout.write(`${s}\n`);
const step = (s: string) => say(`\n== ${s}`);

export async function runDemo(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('weft demo builds network namespaces, cgroups and eBPF programs: run it as root');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'weft-demo-'));
  const lab = await Lab.create({ name: 'demo' });
  let agent: AgentHandle | undefined;
  try {
    step('sandbox: one node, three pods (network namespaces + cgroups)');
    const node = await lab.node('n1');
    const web = await node.pod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    const api = await node.pod('api', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } });
    const legacy = await node.pod('legacy', { namespace: 'legacy', labels: { app: 'legacy' } });
    for (const p of [web, api, legacy]) say(`  pod ${p.namespace}/${p.name}  ip ${p.ip}  cgroup ${p.cgroupPath}`);
    say(`  namespace shop has weft.dev/mesh=enabled; legacy does not`);
    const config = join(dir, 'mesh.yaml');
    const extra: object[] = [];
    const write = () => writeFileSync(config, lab.yaml({ meshNamespaces: ['shop'], extra }));
    write();
    const server = startHttpServer(api, 8080);
    await server.ready;

    step(`weft local --config ${config} --node ${node.name}`);
    agent = startLocalAgent(node, config);
    await agent.ready;
    say('  agent ready: eBPF programs attached to the node\'s cgroup, proxy listening on 15001');

    step('curl from shop/web to shop/api (an unmodified client in an enrolled pod)');
    const r = await curl(web, `http://${api.ip}:8080/orders`);
    say(`  HTTP ${r.status}; api saw the connection come from ${JSON.parse(r.body).remoteAddress} (the node proxy, ${node.ip})`);
    const line = await agent.waitForLog((l) => l['dst.addr'] === `${api.ip}:8080`);
    say(`  access log: ${JSON.stringify(line)}`);

    step('curl from legacy/legacy (namespace not in the mesh)');
    const l1 = await curl(legacy, `http://${api.ip}:8080/orders`);
    say(`  HTTP ${l1.status}; api saw ${JSON.parse(l1.body).remoteAddress} (legacy's own address: not captured)`);

    step('PeerAuthentication STRICT in namespace shop');
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    write();
    let blocked = false;
    for (let i = 0; i < 20 && !blocked; i++) {
      blocked = (await tcpRequest(legacy, api.ip, 8080, { payload: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 1000 })).code !== 0;
    }
    say(`  legacy → api: ${blocked ? 'blocked (its SYN is dropped on api\'s interface)' : 'STILL REACHES api (unexpected)'}`);
    const again = await curl(web, `http://${api.ip}:8080/orders`);
    say(`  web → api through the mesh: HTTP ${again.status}`);

    step('what the kernel counted (admin API /redirect on the node)');
    const counters = await node.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 });
    say(`  ${JSON.stringify(JSON.parse(counters.stdout).counters)}`);
    await server.stop();
    return blocked && again.status === 200 && r.status === 200 ? 0 : 1;
  } finally {
    step('teardown');
    await agent?.kill('SIGTERM');
    const u = spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', `${lab.name}-n1`], { encoding: 'utf8' });
    say(`  ${u.stdout.trim()}`);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
    say('  namespaces, cgroups and pins removed');
  }
}
