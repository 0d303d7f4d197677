/**
 * 10,000 concurrent idle connections through one agent (issue 11 point 3): two nodes on real
 * namespaces, the control plane and an agent per node as real processes (started with the flags
 * every Weft process gets, agent/node-flags.ts), ten client pods on node 1 holding 1,000
 * connections each to one pod on node 2. Every connection is proven end to end with a one-byte
 * echo when opened and again after the agents' memory was read. Each agent holds one socket per
 * connection (node 1 the captured client sockets, node 2 its sockets into the destination pod),
 * and its resident memory is recorded. The issue's target (160 MiB per agent with 10,000 idle
 * connections) is reported by the memory bench against the numbers it measures (docs/memory.md: today
 * 155-158 MiB, Node's own socket + HTTP/2 stream per connection is most of it); this test bounds what
 * a connection adds to an agent at 16 KiB (measured 7.9-8.2 KiB here, 15-20 before 2026-12-06), so a
 * leak or a per-connection regression fails it: a memory bound, not a timing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod } from '../../agent/sandbox';
import { startMesh, type MeshProcesses } from '../../agent/sandbox/weft-agent';
import { formatMemory, holdIdleConnections, IDLE_ECHO_SERVER, processMemory, shares, type IdleHolder, type ProcessMemory } from '../support/idle-connections';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const CONNECTIONS = Number(process.env.WEFT_MEMORY_CONNECTIONS ?? 10_000);
/** 1,000 connections per pod: the proxy admits at most spec.fairness.maxConnectionsPerPod (1,024 by default) from one pod. */
const CLIENT_PODS = 10;
const PORT = 9000;
/** What one idle connection may add to an agent's RSS (measured 15-20 KiB). */
const PER_CONNECTION_LIMIT_KIB = 16;
/** Opening 10,000 connections on a busy two-core host takes minutes; each holder's phase is bounded by this. */
const PHASE_MS = 600_000;
/** Sockets an agent may hold beyond its idle count once the connections are gone: pooled tunnel sessions (1,000 streams each) close when idle. */
const SOCKET_SLACK = 32;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** TCP sockets a process holds (fd links `socket:[N]`; a few are UDP/unix, which only loosens the lower bound by a handful). */
function socketFds(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try { if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++; } catch { /* closed meanwhile */ }
  }
  return n;
}

describe('10,000 idle connections through one agent', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, server: LabPod;
  const clients: LabPod[] = [];
  let dir: string;
  let mesh: MeshProcesses | undefined;
  const holders: IdleHolder[] = [];

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'mem11' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    for (let i = 1; i <= CLIENT_PODS; i++) clients.push(await n1.pod(`client${i}`, { namespace: 'idle', serviceAccount: 'client' }));
    server = await n2.pod('server', { namespace: 'idle', serviceAccount: 'server', labels: { app: 'echo' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-mem11-'));
    const configPath = join(dir, 'mesh.yaml');
    // The port is declared TCP, so the proxies carry it at L4 without waiting to sniff a protocol.
    const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: 'idle' },
      spec: { clusterIP: 'None', selector: { app: 'echo' }, ports: [{ name: 'tcp-echo', port: PORT, targetPort: PORT }] } };
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['idle'], extra: [service] }));
    const echo = server.spawn(process.execPath, ['-e', IDLE_ECHO_SERVER, String(PORT)]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`echo server in pod ${server.name} not listening after 10 s`)), 10_000);
      echo.stdout!.once('data', () => { clearTimeout(t); resolve(); });
      echo.once('exit', (code) => { clearTimeout(t); reject(new Error(`echo server in pod ${server.name} exited (${code})`)); });
    });
    mesh = await startMesh([n1, n2], configPath, join(dir, 'data'));
  });

  after(async () => {
    if (blocker) return;
    for (const h of holders) await h.stop();
    await mesh?.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(`${CONNECTIONS} idle connections from ${CLIENT_PODS} pods on node 1 to one pod on node 2, all echoing, RSS recorded, each agent <= ${PER_CONNECTION_LIMIT_KIB} KiB per connection`, async () => {
    const agents = mesh!.agents;
    const pids = agents.map((a) => a.process.pid!);
    // One connection from each client pod first, bounded: an agent is ready before its workloads' certificates are issued.
    for (const c of clients) {
      let last = '';
      for (let i = 0; i < 40; i++) {
        const probe = holdIdleConnections(c, server.ip, PORT, 1, { phaseTimeoutMs: 5_000 });
        const r = await probe.held.catch((e: Error) => ({ ok: 0, failed: 1, errors: { [e.message]: 1 } }));
        await probe.stop();
        if (r.ok === 1) { last = ''; break; }
        last = JSON.stringify(r.errors);
        await sleep(250);
      }
      assert.equal(last, '', `pod ${c.name} never reached the echo server through the mesh: ${last}\n${agents.map((a) => a.stderr().slice(-1500)).join('\n')}`);
    }
    await sleep(1_000);
    const idle: ProcessMemory[] = pids.map(processMemory);
    const idleSockets = pids.map(socketFds);

    const perPod = shares(CONNECTIONS, CLIENT_PODS);
    holders.push(...clients.map((c, i) => holdIdleConnections(c, server.ip, PORT, perPod[i]!, { phaseTimeoutMs: PHASE_MS, inflight: 32 })));
    const held = await Promise.all(holders.map((h) => h.held));
    const opened = held.reduce((s, r) => s + r.ok, 0);
    const why = () => `${JSON.stringify(held)}\n${agents.map((a, i) => `agent n${i + 1}:\n${a.stderr().slice(-1500)}`).join('\n')}`;
    assert.equal(opened, CONNECTIONS, `every connection echoed its first byte: ${why()}`);

    // They go through the agents: each holds a socket per connection (and the tunnel sessions and listeners besides).
    const sockets = pids.map(socketFds);
    sockets.forEach((n, i) => assert.ok(n - idleSockets[i]! >= CONNECTIONS, `agent n${i + 1} holds ${n} sockets (${idleSockets[i]} before), not one per connection`));

    await sleep(2_000);
    const loaded: ProcessMemory[] = pids.map(processMemory);
    const lines = pids.map((_, i) => `agent n${i + 1}: idle ${formatMemory(idle[i]!)}; with ${CONNECTIONS} idle connections ${formatMemory(loaded[i]!)}, `
      + `${(((loaded[i]!.rss - idle[i]!.rss) * 1024 * 1024) / CONNECTIONS).toFixed(0)} bytes per connection; ${sockets[i]} sockets`);
    process.stdout.write(lines.map((l) => `# memory: ${l}\n`).join(''));

    // Still alive after the reading: one more byte each way on every connection.
    const pinged = await Promise.all(holders.map((h) => h.ping()));
    assert.equal(pinged.reduce((s, r) => s + r.ok, 0), CONNECTIONS, `every connection echoed again: ${JSON.stringify(pinged)}`);

    loaded.forEach((m, i) => {
      const perConnectionKib = ((m.rss - idle[i]!.rss) * 1024) / CONNECTIONS;
      assert.ok(perConnectionKib <= PER_CONNECTION_LIMIT_KIB, `agent n${i + 1} grew ${perConnectionKib.toFixed(1)} KiB per idle connection (${formatMemory(idle[i]!)} idle, ${formatMemory(m)} with ${CONNECTIONS}), over ${PER_CONNECTION_LIMIT_KIB} KiB (docs/memory.md)`);
    });

    // Closed by the clients, the connections leave the agents: their socket counts fall back (bounded wait).
    for (const h of holders.splice(0)) await h.stop();
    let left = pids.map(socketFds);
    for (let i = 0; i < 600 && left.some((n, k) => n > idleSockets[k]! + SOCKET_SLACK); i++) { await sleep(100); left = pids.map(socketFds); }
    left.forEach((n, i) => assert.ok(n <= idleSockets[i]! + SOCKET_SLACK, `agent n${i + 1} still holds ${n} sockets 60 s after the clients closed (${idleSockets[i]} before)`));
  });
});
