/**
 * Inbound plaintext capture on real namespaces, eBPF and transparent sockets: clients outside the
 * mesh, on the server's node and on another node, reach an enrolled PERMISSIVE pod only through
 * the node proxy's port 15006, and the pod still sees each client's own address. With the agent
 * down the connection fails (fail closed); `weft uninstall` leaves nothing behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startEchoServer, startHttpServer, tcpRequest, type ServerHandle } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { linkInfo } from '../../agent/redirect/datapath';
import { CAPTURE } from '../../agent/redirect/capture-routing';
import { weft_counter } from '../../agent/core/bpf-layout.generated';
import * as bpf from '../../native/libbpf';
import { bpftoolJson } from '../support/bpf-attachments';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP server that logs every peer it accepts on stdout and tells the peer what it saw. */
const PEER_LOG_SERVER = `
const plain = (a) => a.replace(/^::ffff:/, '');
require('net').createServer((s) => {
  console.log('accepted ' + plain(s.remoteAddress) + ' at ' + plain(s.localAddress) + ':' + s.localPort);
  s.on('error', () => {});
  s.end('seen ' + plain(s.remoteAddress) + '\\n');
}).listen(7100, '::', () => console.log('listening'));`;

/** A request whose failure (refused, reset, timed out) is an answer, not an exception. */
const attempt = (from: LabPod, host: string, port: number, timeoutMs = 1500) =>
  tcpRequest(from, host, port, { payload: 'x', timeoutMs }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));

/** The capture links pinned for `node`: link id and the interface each is attached to (0 once detached). */
function pinnedIngressLinks(node: LabNode): Array<{ id: number; ifindex: number }> {
  const dir = `/sys/fs/bpf/weft/${node.name}/ingress`;
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((name) => {
    const fd = bpf.objGet(join(dir, name));
    try { const i = linkInfo(fd, name); return { id: i.id, ifindex: i.ifindex }; } finally { closeSync(fd); }
  }).sort((a, b) => a.ifindex - b.ifindex);
}

/** Ids of the kernel's live links. */
const liveLinkIds = () => new Set(bpftoolJson(['link', 'show']).map((l) => Number(l.id)));

describe('inbound plaintext capture (15006)', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, srv: LabPod, guard: LabPod, near: LabPod, far: LabPod;
  let agent1: AgentHandle, agent2: AgentHandle;
  let dir: string, configPath: string;
  const servers: ServerHandle[] = [];
  let peerLog = '';
  const strict = { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'locked' }, spec: { mtls: { mode: 'STRICT' } } };

  const redirectState = async (node: LabNode) =>
    JSON.parse((await node.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 })).stdout);
  /** A counter read straight from the pinned map: works while the agent is down. */
  const counter = (node: LabNode, name: keyof typeof weft_counter): bigint => {
    const fd = bpf.objGet(`/sys/fs/bpf/weft/${node.name}/weft_counters`);
    try {
      const k = Buffer.alloc(4); k.writeUInt32LE(weft_counter[name]);
      return bpf.mapLookup(fd, k, 8)!.readBigUInt64LE(0);
    } finally { closeSync(fd); }
  };
  const rules = (node: LabNode, family: '-4' | '-6') =>
    JSON.parse(execFileSync('ip', ['-n', node.netns, '-j', family, 'rule', 'show'], { encoding: 'utf8' })) as Array<{ fwmark?: string; table?: string }>;
  const tableRoutes = (node: LabNode, family: '-4' | '-6') =>
    execFileSync('ip', ['-n', node.netns, family, 'route', 'show', 'table', String(CAPTURE.table)], { encoding: 'utf8' }).trim();
  const startAgent1 = async () => { agent1 = startLocalAgent(n1, configPath); await agent1.ready; };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'cap' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    srv = await n1.pod('srv', { namespace: 'mesh', serviceAccount: 'sa-srv', ipv6: true });
    guard = await n1.pod('guard', { namespace: 'locked', serviceAccount: 'sa-guard', ipv6: true });
    near = await n1.pod('near', { namespace: 'outside', ipv6: true });
    far = await n2.pod('far', { namespace: 'outside', ipv6: true });
    dir = mkdtempSync(join(tmpdir(), 'weft-capture-'));
    configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['mesh', 'locked'], extra: [strict] }));
    const logServer = srv.spawn(process.execPath, ['-e', PEER_LOG_SERVER]);
    const logReady = new Promise<void>((r) => logServer.stdout!.setEncoding('utf8').on('data', (d: string) => { peerLog += d; if (peerLog.includes('listening')) r(); }));
    servers.push(startHttpServer(srv, 8080), startEchoServer(guard, 7000, { family: 6 }));
    await Promise.all([...servers.map((s) => s.ready), logReady]);
    agent2 = startLocalAgent(n2, configPath);
    await Promise.all([startAgent1(), agent2.ready]);
  });

  after(async () => {
    if (blocker) return;
    for (const a of [agent1, agent2]) await a?.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [label, client] of [['on the same node', () => near], ['on another node', () => far]] as const) {
    for (const family of [4, 6] as const) {
      test(`IPv${family}: a client outside the mesh ${label} reaches the pod through the proxy, and the pod sees the client's own address`, async () => {
        const c = client();
        const [srcIp, dstIp] = family === 4 ? [c.ip, srv.ip] : [c.ip6!, srv.ip6!];
        const url = family === 4 ? `http://${dstIp}:8080/hello` : `http://[${dstIp}]:8080/hello`;
        const r = await curl(c, url);
        assert.equal(r.status, 200, r.stderr);
        const body = JSON.parse(r.body);
        assert.equal(body.pod, 'srv');
        assert.equal(body.remoteAddress, srcIp, 'source preserved: the pod sees its client, not the node proxy');
        const dstAddr = family === 4 ? `${dstIp}:8080` : `[${dstIp}]:8080`;
        const srcPrefix = family === 4 ? `${srcIp}:` : `[${srcIp}]:`;
        const line = await agent1.waitForLog((l) => l.direction === 'inbound' && l['dst.addr'] === dstAddr && String(l['src.addr']).startsWith(srcPrefix));
        assert.equal(line.decision, 'allow');
        assert.equal(line['dst.pod'], 'srv');
        assert.equal(line['src.identity'], undefined, 'a client outside the mesh has no identity');
        assert.ok(Number(line.bytes_sent) + Number(line.bytes_recv) > 0, JSON.stringify(line));
      });
    }
  }

  test('the counters and /redirect show the capture; the STRICT pod is not captured', async () => {
    const state = await redirectState(n1);
    assert.ok(state.capture.addresses.includes(srv.ip) && state.capture.addresses.includes(srv.ip6), JSON.stringify(state.capture));
    assert.ok(!state.capture.addresses.includes(guard.ip), 'a STRICT pod keeps its tc egress enforcement instead');
    assert.ok(Number(state.counters.capture_listener) >= 4, JSON.stringify(state.counters));
    assert.ok(Number(state.counters.capture_established) > 0);
    assert.ok(Number(state.counters.capture_reply) > 0);
    const ifindex = (name: string) => JSON.parse(execFileSync('ip', ['-n', n1.netns, '-j', 'link', 'show', 'dev', name], { encoding: 'utf8' }))[0].ifindex as number;
    const want = [ifindex('eth0'), ...n1.pods.map((p) => ifindex(p.hostIf))].sort((a, b) => a - b);
    assert.deepEqual(state.capture.interfaces, want, 'the uplink and every pod interface of the node');
  });

  test('a STRICT pod keeps its behavior: plaintext from outside the mesh is dropped, not captured', async () => {
    const before = counter(n1, 'WEFT_CTR_CAPTURE_LISTENER');
    const r = await attempt(near, guard.ip, 7000);
    assert.notEqual(r.code, 0, 'plaintext reached the STRICT pod');
    assert.equal(counter(n1, 'WEFT_CTR_CAPTURE_LISTENER'), before, 'the STRICT pod\'s traffic was captured');
    assert.ok(!agent1.accessLog.some((l) => String(l['dst.addr']).startsWith(`${guard.ip}:`)));
  });

  test('a connection to 15006 itself, not to a pod, is refused', async () => {
    const r = await attempt(near, n1.ip, 15006);
    assert.notEqual(r.code, 0, r.stdout);
    await sleep(100);
    assert.ok(!agent1.accessLog.some((l) => l['dst.addr'] === `${n1.ip}:15006` && l.decision === 'allow'));
  });

  test('with the agent down the client cannot reach the pod (fail closed) and the pod sees nothing; after restart it works, attached once', async () => {
    const ok = await attempt(far, srv.ip, 7100);
    assert.equal(ok.stdout.trim(), `seen ${far.ip}`, ok.stderr);
    const linksBefore = pinnedIngressLinks(n1);
    assert.equal(linksBefore.length, 4, `ingress links: ${JSON.stringify(linksBefore)}`); // eth0 and three pod interfaces
    await agent1.kill('SIGTERM');
    const seenBefore = peerLog;
    const drops = counter(n1, 'WEFT_CTR_CAPTURE_DROP_NO_LISTENER');
    for (const c of [near, far]) {
      const down = await attempt(c, srv.ip, 7100);
      assert.notEqual(down.code, 0, `with the agent down, ${c.name} got through un-meshed: ${down.stdout}`);
    }
    const down6 = await attempt(near, srv.ip6!, 7100);
    assert.notEqual(down6.code, 0, 'IPv6 got through un-meshed');
    assert.ok(counter(n1, 'WEFT_CTR_CAPTURE_DROP_NO_LISTENER') >= drops + 3n, 'the SYNs were dropped for want of a listener, and counted');
    await sleep(100);
    assert.equal(peerLog, seenBefore, 'the pod saw a connection while the agent was down');
    assert.deepEqual(pinnedIngressLinks(n1), linksBefore, 'the kernel state stays while the agent is down');

    await startAgent1();
    const listened = counter(n1, 'WEFT_CTR_CAPTURE_LISTENER');
    const up = await attempt(far, srv.ip, 7100);
    assert.equal(up.stdout.trim(), `seen ${far.ip}`, up.stderr);
    assert.equal(counter(n1, 'WEFT_CTR_CAPTURE_LISTENER'), listened + 1n, 'handed to the restarted agent\'s 15006 listener');
    assert.deepEqual(pinnedIngressLinks(n1), linksBefore, 'the same links adopted, not attached twice');
  });

  test('weft uninstall removes links, pins, the ip rule and the table; the client then reaches the pod directly', async () => {
    assert.ok(rules(n1, '-4').some((r) => Number(r.fwmark) === CAPTURE.mark && r.table === String(CAPTURE.table)));
    assert.ok(rules(n1, '-6').some((r) => Number(r.fwmark) === CAPTURE.mark && r.table === String(CAPTURE.table)));
    assert.match(tableRoutes(n1, '-4'), /^local default dev lo/);
    const links = pinnedIngressLinks(n1).map((l) => l.id);
    assert.equal(links.length, 4);
    await agent1.kill('SIGTERM');
    // run from outside the node's network namespace, as the redirect test does: the pinned record says where the rule is
    const r = spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n1.name], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const pinRoot = `/sys/fs/bpf/weft/${n1.name}`;
    assert.ok(!existsSync(pinRoot), `${pinRoot} remains: ${existsSync(pinRoot) ? readdirSync(pinRoot) : ''}`);
    const remaining = () => links.filter((id) => liveLinkIds().has(id));
    for (let i = 0; i < 100 && remaining().length > 0; i++) await sleep(50); // links are freed after their last reference, asynchronously
    assert.deepEqual(remaining(), [], 'capture links remain attached');
    for (const fam of ['-4', '-6'] as const) {
      assert.ok(!rules(n1, fam).some((x) => Number(x.fwmark) === CAPTURE.mark), `ip ${fam} rule remains`);
      assert.equal(tableRoutes(n1, fam), '', `table ${CAPTURE.table} (${fam}) remains`);
    }
    const direct = await attempt(near, srv.ip, 7100);
    assert.equal(direct.stdout.trim(), `seen ${near.ip}`, direct.stderr);
    const viaHttp = await curl(far, `http://${srv.ip}:8080/`);
    assert.equal(JSON.parse(viaHttp.body).remoteAddress, far.ip);
  });
});
