/**
 * Two nodes, a control plane and an agent per node, on real namespaces: meshed traffic between
 * nodes crosses the wire only inside mutual-TLS HBONE tunnels, each presenting the source
 * workload's own identity, and keeps working on cached certificates while the control plane is away.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startEchoServer, startHttpServer, tcpRequest } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const CERT_TTL_SECONDS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const HASH_SERVER = `
const h = require('crypto').createHash('sha256'); let n = 0;
require('net').createServer((s) => { s.on('data', (d) => { h.update(d); n += d.length; }); s.on('end', () => s.end(n + ' ' + h.digest('hex'))); })
  .listen(9100, '0.0.0.0', () => console.log('listening'));`;
const HASH_CLIENT = `
const crypto = require('crypto'); const h = crypto.createHash('sha256');
const [host, total] = [process.argv[1], Number(process.argv[2])]; let sent = 0; let reply = '';
const s = require('net').connect(9100, host, () => {
  const pump = () => { while (sent < total) { const c = crypto.randomBytes(Math.min(1 << 20, total - sent)); h.update(c); sent += c.length; if (!s.write(c)) return s.once('drain', pump); } s.end(); };
  pump();
});
s.on('data', (d) => reply += d); s.on('end', () => console.log(JSON.stringify({ sent, digest: h.digest('hex'), reply })));
s.on('error', (e) => { console.error(e.message); process.exit(1); });`;
const CERT_REQUEST = `
const [dist, address, caFile, tokenFile, node, identity] = process.argv.slice(1);
const fs = require('fs');
const { generateWorkloadKey } = require(dist + '/agent/identity/keys');
const { requestCertificate } = require(dist + '/agent/identity/cert-client');
generateWorkloadKey(identity).then((k) => requestCertificate({ address, caPem: fs.readFileSync(caFile, 'utf8'), token: fs.readFileSync(tokenFile, 'utf8').trim(), node }, k.csrPem, 3600))
  .then(() => console.log('ISSUED'), (e) => console.log(e.code + ' ' + e.message));`;

describe('mTLS tunnels between node proxies', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, a: LabPod, a2: LabPod, b: LabPod, legacy: LabPod;
  let cp: AgentHandle, agent1: AgentHandle, agent2: AgentHandle;
  let dir: string, dataDir: string, configPath: string;
  const extra: object[] = [];
  const writeConfig = () => writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'], extra }));
  const cpAddress = () => `${n1.ip}:${CONTROL_PLANE_PORT}`;
  const certs = async (node: LabNode) => JSON.parse((await node.exec('curl', ['-s', 'http://127.0.0.1:15000/certs'], { timeoutMs: 5000 })).stdout);

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'tunnel' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    a = await n1.pod('a', { namespace: 'shop', serviceAccount: 'sa-a' });
    a2 = await n1.pod('a2', { namespace: 'shop', serviceAccount: 'sa-other' });
    legacy = await n1.pod('legacy', { namespace: 'legacy' });
    b = await n2.pod('b', { namespace: 'shop', serviceAccount: 'sa-b', labels: { app: 'api' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-tunnel-'));
    dataDir = join(dir, 'data');
    configPath = join(dir, 'mesh.yaml');
    writeConfig();
    const servers = [startHttpServer(b, 8080), startEchoServer(b, 7000), (() => {
      const p = b.spawn(process.execPath, ['-e', HASH_SERVER]);
      return { ready: new Promise<void>((r) => p.stdout!.once('data', () => r())) };
    })()];
    await Promise.all(servers.map((s) => s.ready));
    cp = startControlPlane(n1, configPath, dataDir);
    await cp.ready;
    agent1 = startNodeAgent(n1, cpAddress(), dataDir, ['--cert-ttl', String(CERT_TTL_SECONDS)]);
    agent2 = startNodeAgent(n2, cpAddress(), dataDir, ['--cert-ttl', String(CERT_TTL_SECONDS)]);
    await Promise.all([agent1.ready, agent2.ready]);
  });

  after(async () => {
    if (blocker) return;
    for (const p of [agent1, agent2, cp]) await p?.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('curl from a pod on node 1 reaches a pod on node 2; the wire carries TLS to 15008 and never the payload', async () => {
    const marker = `secret-${randomBytes(8).toString('hex')}`;
    const pcap = join(dir, 'wire.pcap');
    const capture = n2.spawn('tcpdump', ['--immediate-mode', '-i', 'eth0', '-U', '-s', '0', '-w', pcap, 'tcp']);
    await sleep(700);
    const r = await curl(a, `http://${b.ip}:8080/${marker}`);
    await sleep(300);
    capture.kill('SIGTERM');
    await new Promise((res) => capture.once('exit', res));
    assert.equal(r.status, 200, r.stderr);
    assert.equal(JSON.parse(r.body).url, `/${marker}`);
    const wire = readFileSync(pcap);
    assert.ok(wire.length > 200, 'the capture saw traffic');
    assert.equal(wire.includes(Buffer.from(marker)), false, 'the request path crossed the wire in the clear');
    const tshark = (filter: string) => spawnSync('tshark', ['-r', pcap, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' }).stdout.trim();
    assert.notEqual(tshark('tls.handshake.type == 1 && tcp.dstport == 15008'), '', 'a TLS ClientHello to 15008');
    assert.notEqual(tshark('tls.handshake.type == 2 || tls.record.version == 0x0303'), '', 'TLS records on the wire');
    assert.equal(tshark('http'), '', 'no plaintext HTTP between the nodes');
    assert.equal(tshark('tcp.port == 8080'), '', 'nothing to the pod port itself crossed the wire');
  });

  test('the destination records the source principal; two service accounts on one node get two identities', async () => {
    for (const [pod, sa] of [[a, 'sa-a'], [a2, 'sa-other']] as const) {
      const r = await curl(pod, `http://${b.ip}:8080/who`);
      assert.equal(r.status, 200, r.stderr);
      const line = await agent2.waitForLog((l) => l.direction === 'inbound' && l['src.identity'] === `spiffe://cluster.local/ns/shop/sa/${sa}`);
      assert.equal(line['dst.identity'], 'spiffe://cluster.local/ns/shop/sa/sa-b');
      assert.equal(line['src.namespace'], 'shop');
    }
    const out = await agent1.waitForLog((l) => l.direction === 'outbound' && l['src.pod'] === 'a2' && String(l['dst.hbone_addr']) === `${n2.ip}:15008`);
    assert.equal(out['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sa-other');
  });

  test('1 GiB through the tunnel arrives byte-exact', async () => {
    const r = await a.exec(process.execPath, ['-e', HASH_CLIENT, b.ip, String(1 << 30)], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const { sent, digest, reply } = JSON.parse(r.stdout);
    assert.equal(sent, 1 << 30);
    assert.equal(reply, `${1 << 30} ${digest}`);
  });

  test('plaintext and TLS without a client certificate are refused at 15008', async () => {
    const plain = await tcpRequest(legacy, n2.ip, 15008, { payload: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', timeoutMs: 5000 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    assert.doesNotMatch(plain.stdout, /HTTP\/1\.1 2/);
    const noCert = await curl(legacy, `https://${n2.ip}:15008/`, { args: ['-k', '--http2'] });
    assert.notEqual(noCert.code, 0);
    assert.equal(noCert.status, 0);
  });

  test('an agent is refused a certificate for an identity with no pod on its node', async () => {
    const r = await n2.exec(process.execPath, ['-e', CERT_REQUEST, join(WEFT_CLI, '..', '..'), cpAddress(), join(dataDir, 'ca.pem'),
      join(dataDir, 'bootstrap.token'), n2.name, 'spiffe://cluster.local/ns/shop/sa/sa-a'], { timeoutMs: 10_000 });
    assert.match(r.stdout, /^PERMISSION_DENIED /);
    assert.match(r.stdout, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/sa-a/);
    assert.match(r.stdout, new RegExp(n2.name));
    assert.match(cp.stderr(), /certificate refused/);
  });

  test('STRICT across nodes: a client outside the mesh cannot reach the pod; the tunnel can', async () => {
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    writeConfig();
    let blocked = false;
    for (let i = 0; i < 30 && !blocked; i++) {
      const r = await tcpRequest(legacy, b.ip, 7000, { payload: 'x', timeoutMs: 1500 }).catch(() => ({ code: -1 }));
      blocked = r.code !== 0;
      if (!blocked) await sleep(100);
    }
    assert.ok(blocked, 'plaintext from outside the mesh still reached the STRICT pod on the other node');
    assert.equal((await curl(a, `http://${b.ip}:8080/`)).status, 200);
    extra.length = 0;
    writeConfig();
  });

  test('control plane away: established and new connections keep working on cached certificates; renewal resumes when it returns', async () => {
    const holder = a.spawn(process.execPath, ['-e', `
      const s = require('net').connect(7000, '${b.ip}'); let got = 0;
      s.on('data', (d) => { got += d.length; }); setInterval(() => s.write('ping\\n'), 200);
      process.stdin.on('data', () => console.log(JSON.stringify({ got, open: !s.destroyed })));
      s.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });`]);
    // Everything the holder prints is kept, so a report it never gives (it exited) fails with why, bounded.
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    holder.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    holder.stdin!.on('error', () => undefined);
    await sleep(500);
    await cp.kill('SIGKILL');
    // past half the certificates' lifetime, renewal must have failed and be retrying
    let failing = false;
    for (let i = 0; i < 80 && !failing; i++) {
      failing = (await certs(n1)).some((c: { lastError?: string }) => c.lastError);
      if (!failing) await sleep(250);
    }
    assert.ok(failing, 'renewal never noticed the control plane was gone');
    const fresh = await curl(a, `http://${b.ip}:8080/while-away`);
    assert.equal(fresh.status, 200, 'a new connection works on the cached certificate');
    cp = startControlPlane(n1, configPath, dataDir);
    await cp.ready;
    let healed = false;
    for (let i = 0; i < 120 && !healed; i++) {
      const status = await certs(n1);
      healed = status.length > 0 && status.every((c: { lastError?: string; renewals: number }) => !c.lastError && c.renewals > 0);
      if (!healed) await sleep(250);
    }
    assert.ok(healed, `renewal did not resume: ${JSON.stringify(await certs(n1))}`);
    // still flowing after the outage: bytes keep arriving between two samples
    const sample = async () => {
      const from = out.length;
      holder.stdin!.write('report\n');
      for (let i = 0; i < 50 && !out.slice(from).includes('\n'); i++) await sleep(100);
      const line = out.slice(from).split('\n')[0];
      assert.ok(line, `the connection holder gave no report within 5 s (exit code ${holder.exitCode}): ${JSON.stringify(out.slice(-500))}`);
      return JSON.parse(line!);
    };
    const first = await sample();
    await sleep(600);
    const second = await sample();
    holder.kill();
    assert.equal(first.error ?? second.error, undefined);
    assert.ok(second.open && second.got > first.got, `the established connection kept flowing: ${JSON.stringify([first, second])}`);
  });
});
