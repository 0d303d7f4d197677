/**
 * Crash and fault recovery on real namespaces, cgroups and eBPF (issue 12, point 5): the node agent
 * killed -9 under load and started again, twenty times; the control plane killed -9 and restarted
 * on the same data directory; a data directory that cannot be written or is full.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startLocalAgent, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { pinRootFor } from '../../agent/redirect/bpffs';
import { bpftoolJson, cgroupLinks } from '../support/bpf-attachments';
import { kernelTestBlocker } from '../support/requirements';
import { startPeerLogServer, startSteadyLoad, type LoadSample, type PeerLogServer } from '../support/load-steady';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CYCLES = Number(process.env.WEFT_CRASH_CYCLES ?? 20);
/** how long the agent stays dead, and how long the load runs after it is ready again, per cycle */
const DOWN_MS = 400;
const UP_MS = 2_500;
const RECOVERY_LIMIT_MS = 2_000;

/** The wall-clock time (ms) of the last "node agent ready" line in an agent's operational log. */
function readyTime(agent: AgentHandle): number {
  const lines = agent.stderr().split('\n').filter((l) => l.includes('"msg":"node agent ready"'));
  const t = Number(JSON.parse(lines.at(-1)!).time);
  assert.ok(Number.isFinite(t), `the ready line has a time: ${lines.at(-1)}`);
  return t;
}

/** Every file under `dir`, relative, sorted. */
function listTree(dir: string, prefix = ''): string[] {
  return readdirSync(dir).sort().flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? [`${prefix}${n}/`, ...listTree(p, `${prefix}${n}/`)] : [`${prefix}${n}`];
  });
}

/**
 * What one lab node holds in the kernel, by facts that belong to it alone (other labs on the
 * machine load and attach objects of their own meanwhile): the capture's links on its cgroup, its
 * pins, the programs behind both, the tc filters on its interfaces, and the splice's sockops links
 * (one per agent process, not adopted: test/support/bpf-attachments.ts).
 */
async function kernelState(node: LabNode) {
  const links = cgroupLinks(node.cgroupPath);
  const pinRoot = pinRootFor(node.name);
  const pins = existsSync(pinRoot) ? listTree(pinRoot) : [];
  const pinnedLinks = pins.filter((p) => !p.endsWith('/') && /^(links|tc|ingress)\//.test(p))
    .flatMap((p) => { try { return bpftoolJson(['link', 'show', 'pinned', join(pinRoot, p)]); } catch { return []; } });
  const progIds = new Set([...links.capture, ...pinnedLinks].map((l) => Number(l.prog_id)));
  const ifaces = (JSON.parse((await node.exec('ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>).map((i) => i.ifname);
  const tc: string[] = [];
  for (const i of ifaces) {
    for (const dir of ['ingress', 'egress']) {
      const r = await node.exec('tc', ['filter', 'show', 'dev', i, dir]);
      if (r.stdout.trim()) tc.push(`${i} ${dir}: ${r.stdout.trim()}`);
    }
  }
  return { cgroupLinkIds: links.capture.map((l) => Number(l.id)).sort(), spliceLinks: links.splice.length, pins, progIds, tc };
}

/** TCP sockets in a node's netns: `[state, local, peer, owner pids]`. */
async function sockets(node: LabNode): Promise<Array<{ state: string; local: string; peer: string; pids: number[] }>> {
  const r = await node.exec('ss', ['-tanpH']);
  return r.stdout.split('\n').filter((l) => l.trim()).map((l) => {
    const [state, , , local, peer] = l.trim().split(/\s+/);
    return { state: state!, local: local!, peer: peer!, pids: [...l.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])) };
  });
}

describe('crash and fault recovery', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, a1: LabPod, a2: LabPod, b: LabPod, c: LabPod;
  let cp: AgentHandle, agent1: AgentHandle, agent2: AgentHandle;
  let dir: string, dataDir: string, configPath: string;
  const extra: object[] = [];
  const servers: PeerLogServer[] = [];
  const writeConfig = () => writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'], extra }));
  const cpAddress = () => `${n1.ip}:${CONTROL_PLANE_PORT}`;
  const startAgent1 = async () => { agent1 = startNodeAgent(n1, cpAddress(), dataDir); await agent1.ready; };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'crs' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    a1 = await n1.pod('a1', { namespace: 'shop', serviceAccount: 'sa-a1' });
    a2 = await n1.pod('a2', { namespace: 'shop', serviceAccount: 'sa-a2' });
    c = await n1.pod('c', { namespace: 'shop', serviceAccount: 'sa-c', labels: { app: 'local' } });
    b = await n2.pod('b', { namespace: 'shop', serviceAccount: 'sa-b', labels: { app: 'api' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-crs-'));
    dataDir = join(dir, 'data');
    configPath = join(dir, 'mesh.yaml');
    // STRICT, so the node also holds tc programs on its pods' interfaces that must survive the crashes once
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    writeConfig();
    servers.push(startPeerLogServer(b, 8080), startPeerLogServer(c, 8080));
    await Promise.all(servers.map((s) => s.ready));
    cp = startControlPlane(n1, configPath, dataDir);
    await cp.ready;
    agent2 = startNodeAgent(n2, cpAddress(), dataDir);
    await Promise.all([startAgent1(), agent2.ready]);
  });

  after(async () => {
    if (blocker) return;
    for (const p of [agent1, agent2, cp]) await p?.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    for (const s of servers) await s.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(`kill -9 of the node agent under load, ${CYCLES} times: fail closed while down, recovered within ${RECOVERY_LIMIT_MS} ms of ready, nothing leaked`, async () => {
    // The mesh works before anything is killed, and the STRICT programs are in place.
    for (const [from, to] of [[a1, b], [a2, c]] as const) {
      let r = await curl(from, `http://${to.ip}:8080/`);
      for (let i = 0; i < 40 && r.status !== 200; i++) { await sleep(100); r = await curl(from, `http://${to.ip}:8080/`); }
      assert.equal(r.status, 200, r.stderr);
    }
    const before = await kernelState(n1);
    assert.ok(before.cgroupLinkIds.length > 0 && before.progIds.size > 0, `the agent attached its programs: ${JSON.stringify(before)}`);
    assert.ok(before.pins.some((p) => /^tc\/\d+$/.test(p)), `a STRICT tc link is pinned: ${before.pins.join(' ')}`);
    const seenProgs = new Set(before.progIds);

    const loads = [startSteadyLoad(a1, [`http://${b.ip}:8080/cross`]), startSteadyLoad(a2, [`http://${c.ip}:8080/same`])];
    const cycles: Array<{ killed: number; spawned: number; ready: number; next: number }> = [];
    try {
      await Promise.all(loads.map((l) => l.running));
      await sleep(500);
      for (let i = 0; i < CYCLES; i++) {
        await agent1.kill('SIGKILL');
        const killed = Date.now();
        await sleep(DOWN_MS);
        const spawned = Date.now();
        await startAgent1();
        const ready = readyTime(agent1);
        for (const id of (await kernelState(n1)).progIds) seenProgs.add(id);
        await sleep(UP_MS);
        cycles.push({ killed, spawned, ready, next: Date.now() });
      }
    } finally {
      for (const l of loads) await l.stop();
    }

    const samples: LoadSample[] = loads.flatMap((l, k) => l.samples.map((s) => ({ ...s, loop: `${k === 0 ? 'cross-node' : 'same-node'} ${s.loop.endsWith('ka') ? 'keep-alive' : 'new-conn'}` })));
    const loopNames = [...new Set(samples.map((s) => s.loop))].sort();
    assert.equal(loopNames.length, 4, `four loops ran: ${loopNames}`);
    const recoveries: number[] = [];
    const failures: string[] = [];
    cycles.forEach((cy, i) => {
      for (const loop of loopNames) {
        const mine = samples.filter((s) => s.loop === loop);
        // Fail closed: nothing started after the agent died succeeded before a new one was even spawned.
        const downOk = mine.filter((s) => s.start >= cy.killed && s.end <= cy.spawned && s.ok);
        if (downOk.length) failures.push(`cycle ${i} ${loop}: ${downOk.length} requests succeeded while the agent was down`);
        if (!mine.some((s) => s.start >= cy.killed && s.end <= cy.spawned)) failures.push(`cycle ${i} ${loop}: no request was tried while the agent was down`);
        // Recovered: the first success started after the ready line, then no failure until the next kill.
        const up = mine.filter((s) => s.start >= cy.ready && s.end <= cy.next);
        const first = up.find((s) => s.ok);
        if (!first) { failures.push(`cycle ${i} ${loop}: no success within ${cy.next - cy.ready} ms of ready`); continue; }
        recoveries.push(first.end - cy.ready);
        if (first.end - cy.ready > RECOVERY_LIMIT_MS) failures.push(`cycle ${i} ${loop}: first success ${first.end - cy.ready} ms after ready`);
        const later = up.filter((s) => s.start >= first.start && !s.ok);
        if (later.length) failures.push(`cycle ${i} ${loop}: ${later.length} failures after recovery: ${JSON.stringify(later.slice(0, 3))}`);
      }
    });
    const sorted = [...recoveries].sort((x, y) => x - y);
    const downtimes = cycles.map((cy) => cy.ready - cy.killed).sort((x, y) => x - y);
    process.stdout.write(`# crash-recovery: ${cycles.length} cycles, ${samples.length} requests; ready->first success ms: median ${sorted[sorted.length >> 1]}, max ${sorted.at(-1)}; kill->ready ms: median ${downtimes[downtimes.length >> 1]}, max ${downtimes.at(-1)}\n`);
    const why = () => `\nnode 1 agent, last errors:\n${agent1.accessLog.filter((l) => l.error).slice(-3).map((l) => JSON.stringify(l)).join('\n')}\nnode 2 agent:\n${agent2.stderr().slice(-1500)}`;
    assert.deepEqual(failures, [], why());

    // Both servers are STRICT (tc admits only what the node proxy sends), so every connection they saw
    // came through a proxy; with source preservation each shows its client pod's own address, before
    // and after every crash (docs/source-address.md).
    for (const [server, client] of [[servers[0]!, a1.ip], [servers[1]!, a2.ip]] as const) {
      const peers = server.peers();
      assert.ok(peers.length > 0, 'the server saw connections');
      assert.deepEqual([...new Set(peers)], [client], 'the server saw its client pod, source preserved through the proxies');
    }

    // Nothing leaked: the same links and pins as before, tc filters unchanged, every program of a
    // dead agent freed, and no socket left by a dead agent in the node's netns.
    const afterState = await kernelState(n1);
    assert.deepEqual(afterState.cgroupLinkIds, before.cgroupLinkIds, 'the cgroup links are the same ones, adopted');
    // The splice's sockops link belongs to an agent process and goes with it: one, the running agent's.
    assert.equal(afterState.spliceLinks, 1, 'one splice sockops link: the killed agents\' went with them');
    assert.deepEqual(afterState.pins, before.pins);
    assert.deepEqual(afterState.tc, before.tc);
    const stale = () => {
      const live = new Set(bpftoolJson(['prog', 'show']).map((p) => Number(p.id)));
      return [...seenProgs].filter((id) => !afterState.progIds.has(id) && live.has(id));
    };
    for (let i = 0; i < 100 && stale().length > 0; i++) await sleep(50);
    assert.deepEqual(stale(), [], 'programs loaded by killed agents are still in the kernel');
    assert.ok(seenProgs.size > afterState.progIds.size, 'each start loaded programs of its own (the check above looked at something)');
    const owners = new Set([agent1.process.pid, cp.process.pid]);
    let left: Awaited<ReturnType<typeof sockets>> = [];
    for (let i = 0; i < 60; i++) {
      left = (await sockets(n1)).filter((s) => s.state !== 'TIME-WAIT' && !s.pids.some((p) => owners.has(p)));
      if (left.length === 0) break;
      await sleep(100);
    }
    assert.deepEqual(left, [], 'sockets in the node netns that no live process owns');
    const listeners = (await sockets(n1)).filter((s) => s.state === 'LISTEN');
    assert.ok(listeners.every((s) => s.pids.some((p) => owners.has(p))), JSON.stringify(listeners));
  });

  test('the control plane killed -9 and restarted on the same data dir: traffic keeps flowing, agents resync, same CA', async () => {
    const caBefore = readFileSync(join(dataDir, 'ca.pem'), 'utf8');
    const load = startSteadyLoad(a1, [`http://${b.ip}:8080/during-cp-restart`]);
    let samples: LoadSample[];
    let killed = 0, restarted = 0;
    try {
      await load.running;
      await sleep(300);
      await cp.kill('SIGKILL');
      killed = Date.now();
      await sleep(1_500);
      cp = startControlPlane(n1, configPath, dataDir);
      await cp.ready;
      restarted = Date.now();
      await sleep(500);
    } finally {
      samples = await load.stop();
    }
    const during = samples.filter((s) => s.start >= killed && s.end <= restarted);
    assert.ok(during.length > 10, `requests were made while the control plane was down (${during.length})`);
    const failed = samples.filter((s) => !s.ok);
    assert.deepEqual(failed, [], 'agents keep their last state: no request failed across the restart');
    assert.equal(readFileSync(join(dataDir, 'ca.pem'), 'utf8'), caBefore, 'the restarted control plane kept its CA');

    // A change made after the restart reaches the agents: a DENY on one path of the server.
    extra.push({
      apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-after', namespace: 'shop' },
      spec: { selector: { matchLabels: { app: 'api' } }, action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'], paths: ['/after-restart'] } }] }] },
    });
    writeConfig();
    let denied = 0;
    for (let i = 0; i < 150 && denied !== 403; i++) {
      denied = (await curl(a1, `http://${b.ip}:8080/after-restart`)).status;
      if (denied !== 403) await sleep(100);
    }
    assert.equal(denied, 403, 'the policy written after the control plane restarted reached the agent on node 2');
    assert.equal((await curl(a1, `http://${b.ip}:8080/still-allowed`)).status, 200);

    // Certificates: node 1's agent, started again, gets new ones from the restarted control plane,
    // and node 2 (holding certificates from before the restart) accepts them: the same CA.
    await agent1.kill('SIGKILL');
    await startAgent1();
    let r = await curl(a1, `http://${b.ip}:8080/new-cert`);
    for (let i = 0; i < 20 && r.status !== 200; i++) { await sleep(100); r = await curl(a1, `http://${b.ip}:8080/new-cert`); }
    assert.equal(r.status, 200, `${r.stderr}\nagent on node 1:\n${agent1.stderr().slice(-3000)}\nagent on node 2 (exit ${agent2.process.exitCode ?? agent2.process.signalCode}):\n${agent2.stderr().slice(-3000)}`);
  });
});

/** Data directories that fail, for `weft controlplane` and `weft local`: named clearly, and recoverable. */
describe('an unwritable or full data directory', { skip: blocker ?? false }, () => {
  let lab: Lab, node: LabNode, pod: LabPod, peer: LabPod;
  let dir: string;
  const mounts: string[] = [];
  const procs: AgentHandle[] = [];

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'crs2' });
    node = await lab.node('n1');
    pod = await node.pod('p', { namespace: 'shop', serviceAccount: 'sa-p' });
    peer = await node.pod('q', { namespace: 'shop', serviceAccount: 'sa-q', labels: { app: 'q' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-crs2-'));
    writeFileSync(join(dir, 'mesh.yaml'), lab.yaml({ meshNamespaces: ['shop'] }));
  });

  after(async () => {
    if (blocker) return;
    for (const p of procs) await p.kill('SIGKILL');
    if (node) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', node.name]);
    for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `weft <args>` in the lab node's netns, to its exit (bounded). */
  const runToExit = async (args: string[]) => {
    const r = await node.exec(process.execPath, [WEFT_CLI, ...args], { timeoutMs: 15_000 });
    return { code: r.code, stderr: r.stderr };
  };
  const cpArgs = (dataDir: string) => ['controlplane', '--config', join(dir, 'mesh.yaml'), '--listen', `127.0.0.1:${CONTROL_PLANE_PORT}`, '--data-dir', dataDir];
  const localArgs = (dataDir: string) => ['local', '--config', join(dir, 'mesh.yaml'), '--node', node.name, '--cgroup-root', node.cgroupPath, '--data-dir', dataDir];
  const mountTmpfs = (at: string, opts: string) => {
    mkdirSync(at, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', at]);
    mounts.push(at);
  };
  const umount = (at: string) => { execFileSync('umount', [at]); mounts.splice(mounts.indexOf(at), 1); };
  /** Fills a tmpfs to the last byte. */
  const fill = (at: string) => { spawnSync('dd', ['if=/dev/zero', `of=${join(at, 'filler')}`, 'bs=4k']); };
  /** After the fault is fixed, the control plane starts and an agent enrolls with its ca.pem and token. */
  const controlPlaneWorks = async (dataDir: string) => {
    const h = startControlPlane(node, join(dir, 'mesh.yaml'), dataDir);
    procs.push(h);
    await h.ready;
    const a = startNodeAgent(node, `127.0.0.1:${CONTROL_PLANE_PORT}`, dataDir);
    procs.push(a);
    try {
      await a.ready;
    } finally {
      await a.kill('SIGKILL');
      await h.kill('SIGKILL');
      spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', node.name]);
    }
  };
  /** After the fault is fixed, `weft local` starts and meshes a pod's request. */
  const localWorks = async (dataDir: string) => {
    const server = startPeerLogServer(peer, 8080);
    await server.ready;
    const h = startLocalAgent(node, join(dir, 'mesh.yaml'), ['--data-dir', dataDir]);
    procs.push(h);
    try {
      await h.ready;
      let r = await curl(pod, `http://${peer.ip}:8080/`);
      for (let i = 0; i < 20 && r.status !== 200; i++) { await sleep(100); r = await curl(pod, `http://${peer.ip}:8080/`); }
      assert.equal(r.status, 200, r.stderr);
      assert.equal(JSON.parse(r.body).remoteAddress, pod.ip, 'the destination sees its client (source preserved)');
      await h.waitForLog((l) => l['dst.addr'] === `${peer.ip}:8080` && l.direction === 'outbound'); // through the proxy
    } finally {
      await h.kill('SIGKILL');
      await server.stop();
      spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', node.name]);
    }
  };

  for (const [verb, argsFor, works] of [['controlplane', cpArgs, () => controlPlaneWorks], ['local', localArgs, () => localWorks]] as const) {
    test(`weft ${verb}: a file where the data directory should be`, async () => {
      const at = join(dir, `${verb}-file`);
      writeFileSync(at, 'not a directory\n');
      const r = await runToExit(argsFor(at));
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`${at.replace(/[/.-]/g, '\\$&')}.*not a directory`), r.stderr);
      rmSync(at);
      await works()(at);
    });

    test(`weft ${verb}: a read-only data directory`, async () => {
      const at = join(dir, `${verb}-ro`);
      mountTmpfs(at, 'ro,size=1m');
      const r = await runToExit(argsFor(at));
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`${at.replace(/[/.-]/g, '\\$&')}.*read-only`), r.stderr);
      execFileSync('mount', ['-o', 'remount,rw', at]);
      await works()(at);
      umount(at);
    });

    test(`weft ${verb}: a full disk under the data directory, at each point of the first start`, async () => {
      // Free space for 0, 1 and 2 files (tmpfs counts whole pages): every step of the first
      // start (key, bundle, token) runs out of space once. Each time the start fails naming the
      // path and the full disk, and once space is freed the next start works: nothing half-written
      // stands in its way.
      for (const freePages of [0, 1, 2]) {
        const at = join(dir, `${verb}-full-${freePages}`);
        mountTmpfs(at, 'size=64k');
        spawnSync('dd', ['if=/dev/zero', `of=${join(at, 'filler')}`, 'bs=4k', `count=${16 - freePages}`]);
        if (freePages === 0) fill(at);
        const r = await runToExit(argsFor(at));
        assert.notEqual(r.code, 0, `with room for ${freePages} files the first start cannot write all three`);
        assert.match(r.stderr, new RegExp(`${at.replace(/[/.-]/g, '\\$&')}.*no space left`, 'i'), r.stderr);
        assert.deepEqual(readdirSync(at).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
        rmSync(join(at, 'filler'));
        await works()(at);
        umount(at);
      }
    });
  }
});
