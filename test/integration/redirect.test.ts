/**
 * The datapath end to end on real namespaces, cgroups and eBPF: one lab node running `weft local`,
 * pods in and out of the mesh, and unmodified clients (curl, node's net) inside them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startEchoServer, startHttpServer, tcpRequest, type ServerHandle } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { cgroupId } from '../../agent/sandbox/cgroup';
import { bpftoolJson } from '../support/bpf-attachments';
import { kernelTestBlocker, skipLoudly } from '../support/requirements';
import * as bpf from '../../native/libbpf';
import { linkInfo } from '../../agent/redirect/datapath';
import { weft_counter } from '../../agent/core/bpf-layout.generated';

const blocker = kernelTestBlocker();
const PEER_CLIENT = `
const [host, port] = process.argv.slice(1);
const s = require('net').connect(Number(port), host, () => {
  console.log(JSON.stringify({ peer: s.remoteAddress, peerPort: s.remotePort }));
  s.end('hello\\n');
});
s.setEncoding('utf8'); let got = ''; s.on('data', (d) => got += d);
s.on('end', () => console.log(got.trim()));
s.on('error', (e) => { console.error(e.code || e.message); process.exitCode = 1; });`;

/** The address an echo server reported for its peer. */
const peerSeen = (stdout: string) => /peer=(.*):\d+/.exec(stdout)?.[1];

/** A request whose failure (refused, reset, timed out) is an answer, not an exception. */
const attempt = (from: LabPod, host: string, port: number, timeoutMs = 1500) =>
  tcpRequest(from, host, port, { payload: 'x', timeoutMs }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));

describe('eBPF redirect into the node proxy', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, a: LabPod, b: LabPod, plain: LabPod, optout: LabPod;
  let agent: AgentHandle;
  let dir: string, configPath: string;
  const servers: ServerHandle[] = [];
  const extra: object[] = [];
  let meshNamespaces = ['mesh'];

  /**
   * Names of the programs linked to the STRICT pod's host-side interface. bpftool 7.1 does not
   * decode tcx links, so each link's target comes from the kernel's bpf_link_info.
   */
  const netShow = async () => {
    const ifindex = JSON.parse((await n1.exec('ip', ['-j', 'link', 'show', 'dev', b.hostIf])).stdout)[0].ifindex;
    const names = new Map(bpftoolJson(['prog', 'show']).map((p) => [p.id, String(p.name)]));
    const onIf = bpftoolJson(['link', 'show']).filter((l) => l.type !== 'cgroup').filter((l) => {
      // A link listed a moment ago may be gone now (the agent re-syncs its tc links, other labs come and go).
      let fd: number;
      try { fd = bpf.linkFdById(Number(l.id)); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false; throw e; }
      try { return linkInfo(fd, `link ${l.id}`).ifindex === ifindex; } finally { closeSync(fd); }
    });
    return JSON.stringify(onIf.map((l) => names.get(l.prog_id)));
  };
  const writeConfig = () => writeFileSync(configPath, lab.yaml({ meshNamespaces, extra }));
  const restartAgent = async () => { agent = startLocalAgent(n1, configPath); await agent.ready; };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'redir' });
    n1 = await lab.node('n1');
    a = await n1.pod('a', { namespace: 'mesh', serviceAccount: 'sa-a', ipv6: true });
    b = await n1.pod('b', { namespace: 'mesh', serviceAccount: 'sa-b', ipv6: true, labels: { app: 'backend' } });
    plain = await n1.pod('plain', { namespace: 'outside' });
    optout = await n1.pod('optout', { namespace: 'mesh', labels: { 'weft.dev/mesh': 'disabled' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-redirect-'));
    configPath = join(dir, 'mesh.yaml');
    writeConfig();
    servers.push(startEchoServer(b, 7000, { family: 6 }), startHttpServer(b, 8080));
    await Promise.all(servers.map((s) => s.ready));
    await restartAgent();
  });

  after(async () => {
    if (blocker) return;
    await agent?.kill('SIGKILL');
    spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n1.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('curl in an enrolled pod reaches another pod through the node proxy; the access log names both ends', async () => {
    const r = await curl(a, `http://${b.ip}:8080/hello`);
    assert.equal(r.status, 200, r.stderr);
    const body = JSON.parse(r.body);
    assert.equal(body.pod, 'b');
    assert.equal(body.remoteAddress, a.ip, 'the destination sees its client pod (source preserved; the access log below shows it went through the proxy)');
    const line = await agent.waitForLog((l) => l['dst.addr'] === `${b.ip}:8080` && l.msg === 'connection complete');
    assert.equal(line['src.namespace'], 'mesh');
    assert.equal(line['src.pod'], 'a');
    assert.equal(line['src.identity'], 'spiffe://cluster.local/ns/mesh/sa/sa-a');
    assert.equal(line['dst.workload'], 'backend');
    assert.equal(line.direction, 'outbound');
    assert.ok(Number(line.bytes_sent) > 0 && Number(line.bytes_recv) > 0);
  });

  test('the client\'s getpeername shows the original peer, not the proxy', async () => {
    const r = await a.exec(process.execPath, ['-e', PEER_CLIENT, b.ip, '7000'], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    const [first, echo] = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(first!), { peer: b.ip, peerPort: 7000 });
    assert.equal(peerSeen(echo!), a.ip, 'source preserved');
    await agent.waitForLog((l) => l['dst.addr'] === `${b.ip}:7000` && l['src.pod'] === 'a');
  });

  test('IPv6: an enrolled pod reaches another pod\'s IPv6 address through the proxy', async () => {
    const r = await a.exec(process.execPath, ['-e', PEER_CLIENT, b.ip6!, '7000'], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    const [first, echo] = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(first!), { peer: b.ip6, peerPort: 7000 });
    assert.equal(peerSeen(echo!), a.ip6, 'source preserved');
    await agent.waitForLog((l) => l['dst.addr'] === `[${b.ip6}]:7000` && l['src.pod'] === 'a');
  });

  test('a dual-stack socket connecting to an IPv4-mapped address is captured as IPv4', async () => {
    const mapped = `::ffff:${b.ip}`;
    const r = await a.exec(process.execPath, ['-e', PEER_CLIENT, mapped, '7000'], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    const [first, echo] = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(first!), { peer: mapped, peerPort: 7000 }, 'getpeername keeps the mapped original peer');
    assert.equal(peerSeen(echo!), a.ip, 'source preserved');
    await agent.waitForLog((l) => l['dst.addr'] === `${b.ip}:7000` && String(l['src.addr']).startsWith(`${a.ip}:`));
  });

  test('a pod outside the mesh and an opted-out pod are not redirected; their plaintext to an enrolled pod is captured inbound, source preserved', async () => {
    for (const client of [plain, optout]) {
      const r = await tcpRequest(client, b.ip, 7000, { payload: 'x' });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^echo b peer=${client.ip.replace(/\./g, '\\.')}:`));
      const line = await agent.waitForLog((l) => String(l['src.addr']).startsWith(`${client.ip}:`));
      assert.equal(line.direction, 'inbound', 'seen only by the inbound plaintext capture (15006), never redirected outbound');
    }
  });

  test('a destination that refuses is reported to the client as a reset at once, not a hang', async () => {
    const started = Date.now();
    const r = await tcpRequest(a, b.ip, 9, { payload: 'x', timeoutMs: 8000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ECONNRESET/);
    assert.ok(Date.now() - started < 5000, 'answered well before the client timeout');
    const line = await agent.waitForLog((l) => l['dst.addr'] === `${b.ip}:9`);
    assert.match(String(line.error), /ECONNREFUSED/);
  });

  test('the outbound port refuses connections that the kernel did not steer there', async () => {
    const r = await tcpRequest(plain, n1.ip, 15001, { payload: 'x' });
    assert.notEqual(r.code, 0);
    assert.match(agent.stderr(), /without a redirect record/);
  });

  test('relabelling a namespace in the config file switches new connections within a second, without restart', async () => {
    meshNamespaces = ['mesh', 'outside'];
    const edited = Date.now();
    // The pod sees its client either way (source preserved): the kernel's redirect counter tells a redirected
    // connect (only this pod connects meanwhile), the access log a captured one (inbound).
    const redirects = () => {
      const fd = bpf.objGet(`/sys/fs/bpf/weft/${n1.name}/weft_counters`);
      try { const k = Buffer.alloc(4); k.writeUInt32LE(weft_counter.WEFT_CTR_REDIRECT4); return bpf.mapLookup(fd, k, 8)!.readBigUInt64LE(0); } finally { closeSync(fd); }
    };
    const from = (direction: string, since: number) => agent.accessLog.slice(since).some((l) => l.direction === direction && String(l['src.addr']).startsWith(`${plain.ip}:`));
    writeConfig();
    let tookMs = -1;
    for (let i = 0; i < 50 && tookMs < 0; i++) {
      const before = redirects();
      const r = await tcpRequest(plain, b.ip, 7000, { payload: 'x' });
      if (r.code === 0 && redirects() > before) tookMs = Date.now() - edited;
      else await new Promise((res) => setTimeout(res, 20));
    }
    assert.ok(tookMs >= 0, 'the relabelled pod was never captured');
    assert.ok(tookMs <= 1000, `took ${tookMs} ms`);
    meshNamespaces = ['mesh'];
    const released = agent.accessLog.length;
    writeConfig();
    for (let i = 0; i < 50; i++) {
      const r = await tcpRequest(plain, b.ip, 7000, { payload: 'x' });
      if (r.stdout.includes(`peer=${plain.ip}:`) && from('inbound', released)) return;
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.fail('removing the label did not release the pod');
  });

  test('an invalid edit is reported by object and field, and the last good state stays in force', async () => {
    writeFileSync(configPath, lab.yaml({ meshNamespaces, extra }).replace('nodeName:', 'nodname:'));
    for (let i = 0; i < 100 && !/nodname/.test(agent.stderr()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(agent.stderr(), /Pod mesh\/a: spec\.nodname/);
    const logged = agent.accessLog.length;
    const r = await curl(a, `http://${b.ip}:8080/`);
    assert.equal(r.status, 200, r.stderr);
    for (let i = 0; i < 100 && !agent.accessLog.slice(logged).some((l) => l['dst.addr'] === `${b.ip}:8080` && l['src.pod'] === 'a'); i++) await new Promise((res) => setTimeout(res, 20));
    assert.ok(agent.accessLog.slice(logged).some((l) => l['dst.addr'] === `${b.ip}:8080` && l['src.pod'] === 'a'), 'still redirected');
    writeConfig();
  });

  test('STRICT: a client outside the mesh cannot reach an enrolled pod; the mesh path can', async () => {
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'mesh' }, spec: { mtls: { mode: 'STRICT' } } });
    writeConfig();
    let blocked = false;
    for (let i = 0; i < 20 && !blocked; i++) {
      const r = await attempt(plain, b.ip, 7000);
      blocked = r.code !== 0;
      if (!blocked) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(blocked, 'plaintext from outside the mesh still reached the STRICT pod');
    const viaMesh = await curl(a, `http://${b.ip}:8080/`);
    assert.equal(viaMesh.status, 200, viaMesh.stderr);
    assert.match(await netShow(), /weft_strict_egress/);
    extra.length = 0;
    writeConfig();
    // Back to PERMISSIVE the outside client gets through, captured again (through the proxy, on 15006).
    const seenBefore = agent.accessLog.length;
    for (let i = 0; i < 50; i++) {
      const r = await attempt(plain, b.ip, 7000);
      const captured = agent.accessLog.slice(seenBefore).some((l) => l.direction === 'inbound' && String(l['src.addr']).startsWith(`${plain.ip}:`));
      if (r.code === 0 && captured) return;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.fail('back to PERMISSIVE, the outside client is still blocked, or reaches the pod without the proxy');
  });

  test('agent restart: enrolled pods fail closed while it is down, work after, and nothing is attached twice', async () => {
    // Only this lab's node: other labs on the machine attach and detach links of their own meanwhile.
    const root = String(cgroupId(n1.cgroupPath));
    const ourLinks = () => bpftoolJson(['link', 'show']).filter((l) => l.cgroup_id !== undefined && String(l.cgroup_id) === root).length;
    const linksBefore = ourLinks();
    assert.ok(linksBefore > 0, 'the agent attached its socket programs to the node cgroup');
    // The capture ports' sk_lookup link on the node's network namespace (docs/capture-ports.md).
    const netnsIno = statSync(`/run/netns/${n1.netns}`).ino;
    const lookupLinks = () => bpftoolJson(['link', 'show']).filter((l) => l.netns_ino === netnsIno && l.attach_type === 'sk_lookup').length;
    assert.equal(lookupLinks(), 1, 'one sk_lookup link on the node\'s network namespace');
    await agent.kill('SIGKILL');
    const down = await tcpRequest(a, b.ip, 7000, { payload: 'x', timeoutMs: 3000 });
    assert.notEqual(down.code, 0, 'with the agent down, the enrolled pod must not get through un-meshed');
    assert.match(down.stderr, /ECONNREFUSED/);
    const plainDown = await attempt(plain, b.ip, 7000);
    assert.notEqual(plainDown.code, 0, 'plaintext from outside the mesh to an enrolled pod fails closed too (inbound capture has no listener)');
    await restartAgent();
    assert.match(agent.stderr(), /"adopted":6,"created":0,"captureLookup":"adopted"/);
    const up = await curl(a, `http://${b.ip}:8080/`);
    assert.equal(JSON.parse(up.body).remoteAddress, a.ip);
    await agent.waitForLog((l) => l['dst.addr'] === `${b.ip}:8080` && l['src.pod'] === 'a');
    assert.equal(ourLinks(), linksBefore);
    assert.equal(lookupLinks(), 1, 'the sk_lookup link adopted, not attached twice');
  });

  test('weft uninstall leaves no program, link, map, filter or pin behind', async () => {
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'mesh' }, spec: { mtls: { mode: 'STRICT' } } });
    writeConfig();
    for (let i = 0; i < 50 && !(await netShow()).includes('weft_strict_egress'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await agent.kill('SIGTERM');
    const pinRoot = `/sys/fs/bpf/weft/${n1.name}`;
    assert.ok(existsSync(pinRoot));
    // This node's objects, by id: the programs of the links on its cgroup and their maps (other labs
    // on the machine have weft_ objects of their own meanwhile); its tc links are checked by
    // netShow(), which looks at this node's interfaces only.
    const root = String(cgroupId(n1.cgroupPath));
    const ourLinks = bpftoolJson(['link', 'show']).filter((l) => String(l.cgroup_id) === root);
    const progIds = new Set(ourLinks.map((l) => Number(l.prog_id)));
    // The node's tc links (STRICT egress, capture ingress) by id: an ifindex alone also matches other labs' interfaces.
    const tcLinkIds = ['tc', 'ingress'].flatMap((d) => (existsSync(join(pinRoot, d)) ? readdirSync(join(pinRoot, d)).map((name) => {
      const fd = bpf.objGet(join(pinRoot, d, name));
      try { return linkInfo(fd, name).id; } finally { closeSync(fd); }
    }) : []));
    assert.ok(tcLinkIds.length > 0, 'the node had tc links before uninstall');
    const mapIds = new Set(bpftoolJson(['prog', 'show']).filter((p) => progIds.has(Number(p.id))).flatMap((p) => (p.map_ids as number[] | undefined) ?? []));
    assert.ok(progIds.size > 0 && mapIds.size > 0, 'the node had programs and maps before uninstall');
    const r = spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n1.name], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(pinRoot), `${pinRoot} remains: ${existsSync(pinRoot) ? readdirSync(pinRoot) : ''}`);
    // the kernel frees programs and maps after their last reference drops, asynchronously
    const left = () => [...bpftoolJson(['prog', 'show']).filter((o) => progIds.has(Number(o.id))), ...bpftoolJson(['map', 'show']).filter((o) => mapIds.has(Number(o.id)))];
    for (let i = 0; i < 100 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(left().map((o) => o.name), []);
    const links = bpftoolJson(['link', 'show']).filter((l) => progIds.has(Number(l.prog_id)) || String(l.cgroup_id) === root);
    assert.deepEqual(links, []);
    assert.deepEqual(bpftoolJson(['link', 'show']).filter((l) => tcLinkIds.includes(Number(l.id))), [], 'no tc link of this node is left');
    const direct = await tcpRequest(a, b.ip, 7000, { payload: 'x' });
    assert.match(direct.stdout, new RegExp(`peer=${a.ip.replace(/\./g, '\\.')}:`), 'after uninstall the pod connects directly');
  });
});

describe('weft local with an invalid config', { skip: blocker ?? false }, () => {
  test('fails at start with the object and field named', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    const d = mkdtempSync(join(tmpdir(), 'weft-badcfg-'));
    try {
      const p = join(d, 'bad.yaml');
      writeFileSync(p, 'apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {nodeName: 42}\n');
      const r = spawnSync(process.execPath, [WEFT_CLI, 'local', '--config', p, '--node', 'nowhere'], { encoding: 'utf8', timeout: 10000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /Pod shop\/web: spec\.nodeName/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
