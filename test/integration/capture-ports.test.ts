/**
 * The capture ports, on real namespaces and eBPF: a pod's captured connects are spread over the
 * node proxy's 16 capture ports (bpf/weft_sock.c capture_port), which no socket listens on: the
 * sk_lookup program hands their SYNs to the outbound port's listeners. So the pod's kernel keeps
 * one range of source ports per capture port instead of one for all of its connections through
 * the proxy.
 * A client that closes first holds each connection's 4-tuple in TIME_WAIT for 60 s; with one port
 * (an agent of an earlier version, weft_config with no capture ports) a pod runs out of source
 * ports after one range's worth of connections to all destinations together. Here the client's
 * range is cut to 64 ports so that the limit shows within a test: 240 connections go through, and
 * with the capture ports turned off in the pinned config the 65th fails.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { weft_config } from '../../agent/core/bpf-layout.generated';
import { pinRootFor } from '../../agent/redirect/bpffs';
import { CAPTURE_PORTS, PORTS } from '../../agent/node/ports';
import { Lab, LabNode, LabPod, startEchoServer, type ServerHandle } from '../../agent/sandbox';
import { startMesh, type MeshProcesses } from '../../agent/sandbox/weft-agent';
import { closeLabChecked } from '../support/lab-cleanup';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const ECHO_PORT = 7000;
const RANGE = { low: 45000, high: 45063 };

/**
 * `n` connections one after another from this pod to host:port: each sends a line and reads the echo
 * server's first line, then closes first (so the client's side holds the TIME_WAIT). Stops at the first failure.
 * Prints { done, error? }. Bounded: each connection has a timeout.
 */
const SEQUENTIAL = `
const net = require('net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
let done = 0;
const next = () => {
  if (done === n) return console.log(JSON.stringify({ done }));
  const s = net.connect({ host, port }, () => s.write('x\\n')); // the client speaks first: no wait for the proxy's protocol sniffing
  let over = false;
  const fail = (error) => { if (over) return; over = true; s.destroy(); console.log(JSON.stringify({ done, error })); };
  s.setTimeout(5000, () => fail('timeout'));
  s.on('error', (e) => fail(e.code || e.message));
  s.on('data', (d) => { if (String(d).includes('\\n')) s.end(); });
  s.on('close', () => { if (over) return; over = true; done++; next(); });
};
next();`;

interface Run { done: number; error?: string }

/** Another program on node 3 that serves one of the capture ports on every address: greets and closes. */
const HOLDER = `require('net').createServer((s) => s.end('held\\n')).listen(Number(process.argv[1]), '0.0.0.0');`;
const HELD_PORT = CAPTURE_PORTS.base + 7;

describe('capture ports: a pod\'s connections through the proxy are not held to one range of source ports', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, n3: LabNode;
  let client: LabPod, near: LabPod, far: LabPod, client3: LabPod;
  let mesh: MeshProcesses;
  let dir: string;
  const servers: ServerHandle[] = [];

  const sequential = async (to: string, n: number, from: LabPod = client): Promise<Run> => {
    const r = await from.exec(process.execPath, ['-e', SEQUENTIAL, to, String(ECHO_PORT), String(n)], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Run;
  };
  /** The proxy ports the client's TIME_WAIT sockets from its current source range are connected to, counted per port. */
  const timeWaitPorts = async (from: LabPod = client, range = RANGE): Promise<Map<number, number>> => {
    const r = await from.exec('ss', ['-Htan', 'state', 'time-wait']);
    const ports = new Map<number, number>();
    const portOf = (addr: string) => Number(addr.slice(addr.lastIndexOf(':') + 1));
    for (const line of r.stdout.trim().split('\n').filter(Boolean)) {
      const [local, peer] = line.trim().split(/\s+/).slice(-2) as [string, string];
      if (portOf(local) < range.low || portOf(local) > range.high) continue;
      ports.set(portOf(peer), (ports.get(portOf(peer)) ?? 0) + 1);
    }
    return ports;
  };
  const metrics = async (node: LabNode) => (await node.exec('curl', ['-s', `http://${node.ip}:15020/metrics`], { timeoutMs: 5000 })).stdout;
  /** Rewrites n1's pinned weft_config with `count` capture ports (0: the outbound port alone, as an earlier agent wrote it). */
  const setCapturePortCount = (count: number) => {
    const fd = bpf.objGet(join(pinRootFor(n1.name), 'weft_config'));
    try {
      const key = Buffer.alloc(4);
      const cfg = bpf.mapLookup(fd, key, weft_config.size)!;
      cfg.writeUInt16LE(count, weft_config.fields.capture_port_count.offset);
      bpf.mapUpdate(fd, key, cfg);
    } finally {
      closeSync(fd);
    }
  };
  const waitForTimeWaitToClear = async () => {
    // TIME_WAIT lasts 60 s; a fresh range of source ports is quicker than waiting it out.
    RANGE.low += 64;
    RANGE.high += 64;
    await client.exec('sysctl', ['-qw', `net.ipv4.ip_local_port_range=${RANGE.low} ${RANGE.high}`]);
  };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'cap11' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    client = await n1.pod('client', { namespace: 'shop', serviceAccount: 'sa-client', ipv6: true });
    near = await n1.pod('near', { namespace: 'shop', serviceAccount: 'sa-near', ipv6: true });
    far = await n2.pod('far', { namespace: 'shop', serviceAccount: 'sa-far', ipv6: true });
    n3 = await lab.node('n3');
    client3 = await n3.pod('client3', { namespace: 'shop', serviceAccount: 'sa-client' });
    n3.spawn(process.execPath, ['-e', HOLDER, String(HELD_PORT)]);
    for (let i = 0; i < 100 && !(await n3.exec('ss', ['-Htln', `sport = :${HELD_PORT}`])).stdout.trim(); i++) await new Promise((r) => setTimeout(r, 50));
    dir = mkdtempSync(join(tmpdir(), 'weft-cap11-'));
    const configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'] }));
    for (const p of [near, far]) servers.push(startEchoServer(p, ECHO_PORT, { family: 6 }));
    await Promise.all(servers.map((s) => s.ready));
    mesh = await startMesh([n1, n2, n3], configPath, join(dir, 'data'));
    const set = await client.exec('sysctl', ['-qw', `net.ipv4.ip_local_port_range=${RANGE.low} ${RANGE.high}`]);
    assert.equal(set.code, 0, set.stderr);
  });

  after(async () => {
    if (blocker) return;
    await mesh?.stop();
    rmSync(dir, { recursive: true, force: true });
    await closeLabChecked(lab, [n1, n2, n3]);
  });

  test('240 connections that the client closes first, through a source port range of 64: across nodes, on the same node, over IPv6', async () => {
    const targets = [['across nodes', far.ip], ['on the same node', near.ip], ['across nodes over IPv6', far.ip6!]] as const;
    for (const [label, ip] of targets) {
      const run = await sequential(ip, 80);
      assert.deepEqual(run, { done: 80 }, `${label}: every connection made`);
    }
    const ports = await timeWaitPorts();
    const total = [...ports.values()].reduce((a, b) => a + b, 0);
    assert.ok(total >= 200, `the client holds its connections in TIME_WAIT (${total})`);
    const outside = [...ports.keys()].filter((p) => p < CAPTURE_PORTS.base || p >= CAPTURE_PORTS.base + CAPTURE_PORTS.count);
    assert.deepEqual(outside, [], `every captured connect went to a capture port: ${JSON.stringify([...ports])}`);
    // 240 random picks over 16 ports: fewer than 12 ports used is below one chance in 10^9.
    assert.ok(ports.size >= 12, `spread over the capture ports: ${JSON.stringify([...ports])}`);
    const state = JSON.parse((await n1.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 })).stdout);
    assert.deepEqual(state.capturePorts, { ports: `${CAPTURE_PORTS.base}-${CAPTURE_PORTS.base + CAPTURE_PORTS.count - 1}` }, 'the admin API shows them in use');
    const agent = mesh.agents[0]!;
    const line = await agent.waitForLog((l) => String(l['src.addr']).startsWith(`${client.ip}:`) && l['dst.addr'] === `${near.ip}:${ECHO_PORT}` && l.decision === 'allow');
    assert.equal(line['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sa-client', 'attributed to the client pod as on the outbound port');
  });

  test('a node where another program holds a capture port: its agent stays on the outbound port, says why, and that program keeps its connections', async () => {
    const state = JSON.parse((await n3.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 })).stdout);
    assert.equal(state.capturePorts.ports, null);
    assert.match(state.capturePorts.reason, new RegExp(`${n3.ip.replace(/\./g, '\\.')}:${HELD_PORT}`));
    assert.match(mesh.agents[2]!.stderr(), /captured connections stay on the outbound port/);
    assert.match(await metrics(n3), /^weft_capture_ports 0$/m, 'and /metrics says so');
    assert.match(await metrics(n1), new RegExp(`^weft_capture_ports ${CAPTURE_PORTS.count}$`, 'm'), 'where they are free, all of them');
    assert.deepEqual(await sequential(far.ip, 20, client3), { done: 20 }, 'its pods are meshed as before');
    const ports3 = await timeWaitPorts(client3, { low: 1, high: 65535 });
    assert.deepEqual([...ports3.keys()], [PORTS.outbound], `through 15001 alone: ${JSON.stringify([...ports3])}`);
    assert.ok(ports3.get(PORTS.outbound)! >= 20, `the client holds its connections in TIME_WAIT: ${JSON.stringify([...ports3])}`);
    const greet = await n1.exec(process.execPath, ['-e', `require('net').connect(${HELD_PORT}, '${n3.ip}').on('data', (d) => process.stdout.write(d))`], { timeoutMs: 5000 });
    assert.equal(greet.stdout, 'held\n', 'the program on the port still gets its connections, not the proxy');
  });

  test('with the capture ports off (the config an earlier agent writes) the same client runs out of source ports after 64', async () => {
    await waitForTimeWaitToClear();
    setCapturePortCount(0);
    try {
      const run = await sequential(far.ip, 100);
      assert.equal(run.done, 64, `one range of 64 source ports to ${PORTS.outbound}: ${JSON.stringify(run)}`);
      assert.equal(run.error, 'EADDRNOTAVAIL');
      assert.deepEqual([...await timeWaitPorts()], [[PORTS.outbound, 64]], 'all of them to the outbound port');
    } finally {
      setCapturePortCount(CAPTURE_PORTS.count);
    }
    await waitForTimeWaitToClear();
    assert.deepEqual(await sequential(far.ip, 100), { done: 100 }, 'and with them back on, 100 go through the same range');
  });
});
