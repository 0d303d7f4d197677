/**
 * STRICT on the three common CNI wirings, on real namespaces, veths, a Linux bridge and eBPF: one
 * lab node per wiring (ptp: /32 host routes; subnet: a connected /30 per pod; bridge: veths
 * enslaved to cni0), each running `weft local`. On each, plaintext from a pod outside the mesh is
 * refused by the kernel (on the bridge this client is on the same bridge, so its packets are never
 * routed), while a meshed pod on the node is served. A STRICT pod whose interface cannot be found
 * (its address routed nowhere; a bridged pod that never answers ARP) is shown as NOT enforced in
 * `weft status`, the admin API, the metrics and the node's readiness, until it can be enforced.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, startEchoServer, tcpRequest, type ServerHandle, type Wiring } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PORT = 7000;
const STRICT = { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'mesh' }, spec: { mtls: { mode: 'STRICT' } } };

/** A request whose failure (refused, reset, timed out) is an answer, not an exception. */
const attempt = (from: LabPod, host: string, timeoutMs = 1500) =>
  tcpRequest(from, host, PORT, { payload: 'x', timeoutMs }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));

/** GET on the node's own admin (15000), health (15021) or metrics (15020) port: status and body. */
async function get(node: LabNode, port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await node.exec('curl', ['-sS', '--max-time', '5', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`], { timeoutMs: 7000 });
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}
const admin = async (node: LabNode, path: string) => JSON.parse((await get(node, 15000, path)).body);

interface Workload { pod: string; mtls: string; hostIfindex: number | null; strictEnforced?: boolean; strictNotEnforced?: string }
const workload = async (node: LabNode, key: string): Promise<Workload | undefined> =>
  (await admin(node, '/workloads') as Workload[]).find((w) => w.pod === key);

/** Polls (bounded) until `check` answers something; returns it or fails with `what`. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, tries = 60, everyMs = 250): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  assert.fail(`not within ${(tries * everyMs) / 1000} s: ${what}`);
}

async function ifindexOf(node: LabNode, dev: string): Promise<number> {
  return JSON.parse((await node.exec('ip', ['-j', 'link', 'show', 'dev', dev])).stdout)[0].ifindex;
}

describe('STRICT on ptp, subnet and bridge CNI wirings', { skip: blocker ?? false }, () => {
  let lab: Lab;
  const nodes = new Map<Wiring, LabNode>();
  const agents = new Map<Wiring, AgentHandle>();
  const pods = new Map<string, LabPod>();
  const servers: ServerHandle[] = [];
  let dir: string;

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'stc' });
    for (const [wiring, short] of [['ptp', 'p'], ['subnet', 's'], ['bridge', 'b']] as const) {
      const node = await lab.node(short, { wiring });
      nodes.set(wiring, node);
      const ipv6 = wiring !== 'subnet';
      pods.set(`${short}-srv`, await node.pod(`${short}-srv`, { namespace: 'mesh', ipv6 }));
      pods.set(`${short}-cli`, await node.pod(`${short}-cli`, { namespace: 'mesh', ipv6 }));
      pods.set(`${short}-out`, await node.pod(`${short}-out`, { namespace: 'outside', ipv6 }));
    }
    // ptp: a STRICT pod whose address the node routes nowhere (its host route is gone).
    const lost = await nodes.get('ptp')!.pod('p-lost', { namespace: 'mesh' });
    pods.set('p-lost', lost);
    await nodes.get('ptp')!.exec('ip', ['route', 'del', `${lost.ip}/32`, 'dev', lost.hostIf]);
    // bridge: a STRICT pod on cni0 that never answers ARP (its side is down), so its port is unknown.
    const mute = await nodes.get('bridge')!.pod('b-mute', { namespace: 'mesh' });
    pods.set('b-mute', mute);
    await mute.exec('ip', ['link', 'set', 'eth0', 'down']);

    dir = mkdtempSync(join(tmpdir(), 'weft-stc-'));
    const configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['mesh'], extra: [STRICT] }));
    for (const p of pods.values()) if (p.name.endsWith('-srv')) servers.push(startEchoServer(p, PORT, { family: p.ip6 ? 6 : 4 }));
    await Promise.all(servers.map((s) => s.ready));
    for (const [wiring, node] of nodes) agents.set(wiring, startLocalAgent(node, configPath));
    await Promise.all([...agents.values()].map((a) => a.ready));
  });

  after(async () => {
    if (blocker) return;
    for (const a of agents.values()) await a.kill('SIGKILL');
    for (const n of nodes.values()) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [wiring, short] of [['ptp', 'p'], ['subnet', 's'], ['bridge', 'b']] as const) {
    test(`${wiring}: the STRICT pod's own host-side veth is found; an outside client is refused, the mesh is served`, async () => {
      const node = nodes.get(wiring)!, srv = pods.get(`${short}-srv`)!, cli = pods.get(`${short}-cli`)!, out = pods.get(`${short}-out`)!;
      const w = await eventually(`${srv.name} enforced`, async () => {
        const x = await workload(node, `mesh/${srv.name}`);
        return x?.strictEnforced ? x : undefined;
      });
      assert.equal(w.mtls, 'STRICT');
      assert.equal(w.hostIfindex, await ifindexOf(node, srv.hostIf), `the program sits on ${srv.hostIf}, the pod's own veth${wiring === 'bridge' ? ' (the bridge port, not cni0)' : ''}`);

      const drops = async () => Number((await admin(node, '/redirect')).counters.strict_drop_syn);
      const before = await drops();
      const targets = [srv.ip, ...(srv.ip6 ? [srv.ip6] : [])];
      for (const ip of targets) {
        const r = await attempt(out, ip);
        assert.notEqual(r.code, 0, `plaintext from ${out.name} (outside the mesh${wiring === 'bridge' ? ', on the same bridge' : ''}) reached ${srv.name} at ${ip}: ${r.stdout}`);
      }
      assert.ok(await drops() > before, 'the kernel dropped the outside client\'s SYNs at the STRICT pod\'s interface');

      for (const ip of targets) {
        const r = await tcpRequest(cli, ip, PORT, { payload: 'x' });
        assert.equal(r.code, 0, `the meshed ${cli.name} was not served by ${srv.name} at ${ip}: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`^echo ${srv.name} peer=`));
        const peer = /peer=(.*):\d+/.exec(r.stdout)?.[1]?.replace(/^::ffff:/, '');
        // Served at all means delivered by the node proxy (the STRICT pod admits nothing else); it connects from the
        // client's own address where the pod's replies can be steered back (a routed veth), from the node's on a bridge.
        const own = peer === cli.ip || peer === cli.ip6;
        assert.ok(peer && (wiring === 'bridge' ? !own : own), `${wiring === 'bridge' ? 'from the node proxy' : 'from the client itself (source preserved)'}: the server saw ${peer}`);
      }
    });
  }

  test('bridge: a pod on another node outside the mesh is refused too (routed in through the uplink)', async () => {
    const srv = pods.get('b-srv')!;
    for (const from of [pods.get('p-out')!, pods.get('s-out')!]) {
      const r = await attempt(from, srv.ip);
      assert.notEqual(r.code, 0, `plaintext from ${from.name} on another node reached ${srv.name}: ${r.stdout}`);
    }
  });

  test('a STRICT pod routed nowhere is NOT enforced in weft status, /redirect, /workloads, the metrics and readiness; then enforced once routed', async () => {
    const node = nodes.get('ptp')!, lost = pods.get('p-lost')!;
    const redirect = await admin(node, '/redirect');
    const entry = (redirect.strictNotEnforced as Array<{ pod: string; reason: string }>).find((e) => e.pod === 'mesh/p-lost');
    assert.ok(entry, `/redirect strictNotEnforced: ${JSON.stringify(redirect.strictNotEnforced)}`);
    assert.match(entry.reason, new RegExp(`${lost.ip.replace(/\./g, '\\.')}: the node has no route to it`));
    assert.ok(!(redirect.strictNotEnforced as Array<{ pod: string }>).some((e) => e.pod === 'mesh/p-srv'), 'the enforced pod is not listed');

    const w = await workload(node, 'mesh/p-lost');
    assert.equal(w?.strictEnforced, false);
    assert.equal(w?.hostIfindex, null);
    assert.match(String(w?.strictNotEnforced), /no route/);

    const status = await node.exec(process.execPath, [...WEFT_NODE_FLAGS, WEFT_CLI, 'status'], { timeoutMs: 10_000 });
    assert.equal(status.code, 0, status.stderr);
    const shown = JSON.parse(status.stdout);
    assert.deepEqual(shown.redirect.strictNotEnforced.map((e: { pod: string }) => e.pod), ['mesh/p-lost']);
    assert.equal(shown.workloads.find((x: Workload) => x.pod === 'mesh/p-lost').strictEnforced, false);

    const metrics = (await get(node, 15020, '/metrics')).body;
    assert.match(metrics, /^weft_strict_not_enforced\{pod_namespace="mesh",pod_name="p-lost"\} 1$/m);
    assert.doesNotMatch(metrics, /weft_strict_not_enforced\{pod_namespace="mesh",pod_name="p-srv"\}/);

    const ready = await get(node, 15021, '/healthz/ready');
    assert.equal(ready.status, 503);
    assert.match(JSON.parse(ready.body).error, /STRICT not enforced for pod mesh\/p-lost: .*no route/);
    assert.equal((await get(node, 15021, '/healthz/ready?pod=mesh/p-lost')).status, 503);
    assert.equal((await get(node, 15021, '/healthz/ready?pod=mesh/p-srv')).status, 200, 'an enforced pod answers ready on its own');
    assert.equal((await get(nodes.get('subnet')!, 15021, '/healthz/ready')).status, 200, 'a node whose STRICT pods are all enforced is ready');
    assert.equal((await get(node, 15021, '/healthz/live')).status, 200, 'the agent stays live: nothing to restart');

    // Routed again: the agent's retry finds the interface, enforces, and the node is ready.
    await node.exec('ip', ['route', 'add', `${lost.ip}/32`, 'dev', lost.hostIf]);
    await eventually('p-lost enforced and the node ready', async () => {
      const x = await workload(node, 'mesh/p-lost');
      return x?.strictEnforced && (await get(node, 15021, '/healthz/ready')).status === 200 ? true : undefined;
    }, 120, 250);
    assert.equal((await workload(node, 'mesh/p-lost'))?.hostIfindex, await ifindexOf(node, lost.hostIf));
    assert.doesNotMatch((await get(node, 15020, '/metrics')).body, /weft_strict_not_enforced\{/);
  });

  test('bridge: a STRICT pod whose MAC the bridge cannot learn is NOT enforced, with the reason; the others on cni0 are', async () => {
    const node = nodes.get('bridge')!;
    const redirect = await admin(node, '/redirect');
    const entries = redirect.strictNotEnforced as Array<{ pod: string; reason: string }>;
    assert.deepEqual(entries.map((e) => e.pod), ['mesh/b-mute']);
    assert.match(entries[0]!.reason, /behind bridge cni0, but its MAC address is not known yet/);
    assert.match((await get(node, 15020, '/metrics')).body, /^weft_strict_not_enforced\{pod_namespace="mesh",pod_name="b-mute"\} 1$/m);
    assert.equal((await get(node, 15021, '/healthz/ready')).status, 503);
    assert.equal((await workload(node, 'mesh/b-srv'))?.strictEnforced, true);
    assert.equal((await workload(node, 'mesh/b-cli'))?.strictEnforced, true);
  });
});
