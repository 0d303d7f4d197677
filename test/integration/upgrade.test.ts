/**
 * Hitless agent upgrades on real namespaces, cgroups and eBPF (issue 12, point 1; docs/upgrade.md).
 * A DaemonSet rolling update with maxSurge 1, played on the netns lab: for a node, a successor
 * `weft agent` starts with the same flags while the old one runs; once it says it is ready the old
 * one gets SIGTERM, closes its listeners and drains. Three rounds, each upgrading the client's node
 * and then the server's node, under a steady load: wrk over keep-alive connections, a loop of new
 * connections (cross-node and same-node), and one long-lived 1 GiB stream checked byte-exact.
 * Every agent runs in a cgroup of its own, as two agent pods do in Kubernetes, and every pod is
 * STRICT: the old agent's sockets must stay admitted while it drains beside its successor.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startLocalAgent, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { inNetnsAndCgroup } from '../../agent/sandbox/netns';
import { pinRootFor } from '../../agent/redirect/bpffs';
import { bpftoolJson, captureProgramsPerType, cgroupLinks } from '../support/bpf-attachments';
import { kernelTestBlocker } from '../support/requirements';
import { startPeerLogServer, startSteadyLoad, type LoadSample, type PeerLogServer } from '../support/load-steady';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROUNDS = 3;
/** the old agents' drain grace: longer than the load, so an old agent that exits on its own has drained, not cut */
const GRACE_S = 120;
const STREAM_BYTES = 1024 * 1024 * 1024;
/**
 * the stream's pace, so that it spans all the upgrades (1 GiB in about 34 s): six replacements take
 * ~20 s on a quiet host; at 45 MiB/s (24 s) a CI run beside other labs saw them outlast the stream
 */
const STREAM_RATE = 30 * 1024 * 1024;
/** how long the load runs on the new agents after each replacement */
const SETTLE_MS = 1_500;
/** wrk runs until the upgrades are done (it is stopped with SIGINT, and prints its summary); this bounds it */
const WRK_SECONDS = 240;

/** Sends STREAM_BYTES (1 MiB chunks, each stamped with its index) at a bounded rate; prints their sha256. */
const STREAM_SERVER = `
const net = require('net'), crypto = require('crypto');
const [port, total, rate] = process.argv.slice(1).map(Number);
const CHUNK = 1 << 20;
net.createServer((sock) => {
  const block = crypto.randomBytes(CHUNK), hash = crypto.createHash('sha256');
  let i = 0; const t0 = Date.now();
  sock.on('error', (e) => console.log(JSON.stringify({ error: e.message, sent: i * CHUNK })));
  sock.resume();
  const pump = () => {
    while (i < total / CHUNK) {
      const due = t0 + (i * CHUNK / rate) * 1000;
      if (Date.now() < due) return void setTimeout(pump, due - Date.now());
      const c = Buffer.from(block); c.writeBigUInt64LE(BigInt(i)); hash.update(c); i++;
      if (!sock.write(c)) return void sock.once('drain', pump);
    }
    sock.end(() => { console.log(JSON.stringify({ sent: i * CHUNK, sha256: hash.digest('hex') })); process.exit(0); });
  };
  pump();
}).listen(port, '0.0.0.0', () => console.log('listening'));`;

/** Reads the stream to its end; prints how many bytes arrived and their sha256. */
const STREAM_CLIENT = `
const net = require('net'), crypto = require('crypto');
const [host, port] = process.argv.slice(1);
const hash = crypto.createHash('sha256'); let received = 0; const t0 = Date.now();
const s = net.connect(Number(port), host, () => { s.write('stream\\n'); console.error('connected'); });
s.on('data', (d) => { hash.update(d); received += d.length; });
s.on('end', () => { console.log(JSON.stringify({ received, sha256: hash.digest('hex'), ms: Date.now() - t0 })); s.end(); });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code || e.message, received })); process.exit(1); });`;

function listTree(dir: string, prefix = ''): string[] {
  return readdirSync(dir).sort().flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? [`${prefix}${n}/`, ...listTree(p, `${prefix}${n}/`)] : [`${prefix}${n}`];
  });
}

/**
 * What one lab node has attached in the kernel, by facts that belong to it alone: the capture's links
 * on its cgroup, its programs attached there per attach type, its pins and the links behind them,
 * and the splice's sockops links (one per agent process, not adopted: test/support/bpf-attachments.ts).
 */
function attachments(node: LabNode) {
  const links = cgroupLinks(node.cgroupPath);
  const pinRoot = pinRootFor(node.name);
  const pins = existsSync(pinRoot) ? listTree(pinRoot) : [];
  const pinnedLinks = pins.filter((p) => /^(links|tc|ingress)\/[^/]+$/.test(p))
    .map((p) => { const l = bpftoolJson(['link', 'show', 'pinned', join(pinRoot, p)]) as unknown as Record<string, unknown>; return { pin: p, id: Number(l.id), progId: Number(l.prog_id) }; });
  return {
    cgroupLinkIds: links.capture.map((l) => Number(l.id)).sort((a, b) => a - b),
    /** the splice's sockops links: one per agent process on the node */
    spliceLinks: links.splice.length,
    perType: captureProgramsPerType(node.cgroupPath),
    pins,
    pinnedLinkIds: pinnedLinks.map((l) => `${l.pin}=${l.id}`),
    progIds: new Set(pinnedLinks.map((l) => l.progId)),
  };
}

/** wrk's summary: requests, non-2xx answers and socket errors. */
function parseWrk(out: string) {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return { requests, non2xx, socketErrors: sock ? { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) } : { connect: 0, read: 0, write: 0, timeout: 0 } };
}

/** The whole output of a process once it exits (bounded). */
function outputOf(child: ChildProcess, what: string, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${what} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`)); }, timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

interface Exit { code: number | null; signal: NodeJS.Signals | null; at: number }

describe('hitless agent upgrades', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, client: LabPod, server: LabPod, local: LabPod;
  let cp: AgentHandle;
  let dir: string, dataDir: string;
  /** every agent started, to kill on the way out whatever happened */
  const started: AgentHandle[] = [];
  const exits = new Map<AgentHandle, Promise<Exit>>();
  const current = new Map<LabNode, AgentHandle>();
  const servers: PeerLogServer[] = [];
  const others: ChildProcess[] = [];
  const cpAddress = () => `${n1.ip}:${CONTROL_PLANE_PORT}`;

  /** cgroups made for the agents (each in its own, as each agent pod is), removed on the way out */
  const agentCgroups: string[] = [];
  const startAgent = (node: LabNode): AgentHandle => {
    const cgroup = join(node.cgroupPath, `agent-${agentCgroups.length}`);
    mkdirSync(cgroup);
    agentCgroups.push(cgroup);
    // The node as startNodeAgent sees it, but spawning into the agent's own cgroup.
    const place = Object.assign(Object.create(node) as LabNode, {
      spawn: (cmd: string, args: string[]) => { const [c, a] = inNetnsAndCgroup(node.netns, cgroup, cmd, args); return spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] }); },
    });
    const h = startNodeAgent(place, cpAddress(), dataDir, ['--drain-grace', String(GRACE_S)]);
    started.push(h);
    exits.set(h, new Promise((r) => h.process.once('exit', (code, signal) => r({ code, signal, at: Date.now() }))));
    return h;
  };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'upg12' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    client = await n1.pod('c', { namespace: 'shop', serviceAccount: 'sa-c' });
    local = await n1.pod('l', { namespace: 'shop', serviceAccount: 'sa-l' });
    server = await n2.pod('s', { namespace: 'shop', serviceAccount: 'sa-s' });
    dir = mkdtempSync(join(tmpdir(), 'weft-upg12-'));
    dataDir = join(dir, 'data');
    const configPath = join(dir, 'mesh.yaml');
    const strict = { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } };
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'], extra: [strict] }));
    servers.push(startPeerLogServer(server, 8080), startPeerLogServer(local, 8080));
    await Promise.all(servers.map((s) => s.ready));
    cp = startControlPlane(n1, configPath, dataDir);
    started.push(cp);
    await cp.ready;
    for (const n of [n1, n2]) current.set(n, startAgent(n));
    await Promise.all([...current.values()].map((a) => a.ready));
  });

  after(async () => {
    if (blocker) return;
    for (const p of others) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const h of started) await h.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    for (const cg of agentCgroups) { try { rmdirSync(cg); } catch { /* the lab's removal reports it */ } }
    for (const s of servers) await s.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(`${ROUNDS} rounds of upgrades on both nodes under wrk, new connections and a 1 GiB stream: no failed request, the stream byte-exact, no duplicate attachment`, { timeout: 300_000 }, async () => {
    // The mesh works before anything is replaced.
    const probe = startSteadyLoad(client, [`http://${server.ip}:8080/warm`, `http://${local.ip}:8080/warm`]);
    await probe.running;
    for (let i = 0; i < 50 && !(probe.samples.filter((s) => s.ok).length >= 4); i++) await sleep(100);
    const warm = await probe.stop();
    assert.ok(warm.some((s) => s.ok), `the mesh serves before the upgrades: ${JSON.stringify(warm.slice(-3))}`);

    const before = { n1: attachments(n1), n2: attachments(n2) };
    for (const b of Object.values(before)) assert.ok(b.cgroupLinkIds.length === 6 && b.progIds.size > 0, `the agents attached their programs: ${JSON.stringify(b)}`);
    for (const b of Object.values(before)) assert.ok(b.pins.some((p) => /^tc\/\d+$/.test(p)), `STRICT is enforced on the pods (tcx egress pinned): ${b.pins.join(' ')}`);
    const seenProgs = new Set([...before.n1.progIds, ...before.n2.progIds]);

    const streamServer = server.spawn(process.execPath, ['-e', STREAM_SERVER, '9000', String(STREAM_BYTES), String(STREAM_RATE)]);
    others.push(streamServer);
    const streamSent = outputOf(streamServer, 'the stream server', 240_000);
    for (let i = 0; i < 50; i++) { if ((await server.exec('ss', ['-tlnH', 'sport = :9000'])).stdout.trim()) break; await sleep(100); }
    const streamClient = client.spawn(process.execPath, ['-e', STREAM_CLIENT, server.ip, '9000']);
    others.push(streamClient);
    const streamGot = outputOf(streamClient, 'the stream client', 240_000);
    const wrk = client.spawn('wrk', ['-t1', '-c4', `-d${WRK_SECONDS}s`, `http://${server.ip}:8080/wrk`]);
    others.push(wrk);
    const wrkDone = outputOf(wrk, 'wrk', (WRK_SECONDS + 30) * 1000);
    const load = startSteadyLoad(client, [`http://${server.ip}:8080/cross`, `http://${local.ip}:8080/same`], { pauseMs: 10, timeoutMs: 5_000 });
    const replaced: Array<{ node: string; old: AgentHandle; startMs: number; signalled: number }> = [];
    let samples: LoadSample[] = [];
    try {
      await load.running;
      await sleep(1_000);
      for (let round = 0; round < ROUNDS; round++) {
        for (const node of [n1, n2]) {
          const old = current.get(node)!;
          const t0 = Date.now();
          const next = startAgent(node);
          await next.ready;
          const startMs = Date.now() - t0;
          old.process.kill('SIGTERM');
          replaced.push({ node: node.name, old, startMs, signalled: Date.now() });
          current.set(node, next);
          for (const id of attachments(node).progIds) seenProgs.add(id);
          await sleep(SETTLE_MS);
        }
      }
    } finally {
      samples = await load.stop();
      wrk.kill('SIGINT');
    }
    const wrkOut = await wrkDone;
    const [got, sent] = await Promise.all([streamGot, streamSent]);

    // Zero failed requests: wrk's errors and non-2xx, and every request of the new-connection and keep-alive loops.
    const w = parseWrk(wrkOut.stdout);
    assert.ok(w.requests > 0, `wrk ran: ${wrkOut.stdout}${wrkOut.stderr}`);
    assert.deepEqual({ non2xx: w.non2xx, ...w.socketErrors }, { non2xx: 0, connect: 0, read: 0, write: 0, timeout: 0 }, `wrk saw failures:\n${wrkOut.stdout}`);
    // Keep-alive connections move: a draining agent answers HTTP/1.1 with Connection: close, so wrk's
    // connections follow each upgrade; the newest agent on the server's node serves wrk too.
    const newest = current.get(n2)!;
    const wrkServed = newest.accessLog.filter((l) => l.path === '/wrk').length;
    assert.ok(wrkServed > 0, `the last agent on node 2 served wrk's requests (${wrkServed}): its keep-alive connections reconnected to it`);
    const failed = samples.filter((s) => !s.ok);
    const loops = new Set(samples.map((s) => s.loop));
    assert.equal(loops.size, 4, `four loops ran: ${[...loops]}`);
    const during = samples.filter((s) => s.start >= replaced[0]!.signalled - 2_000 && s.end <= replaced.at(-1)!.signalled);
    assert.ok(during.length > 100, `the loops ran across the upgrades (${during.length} requests)`);
    const why = () => current.get(n1)!.accessLog.filter((l) => l.error).slice(-3).map((l) => JSON.stringify(l)).join('\n');
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${samples.length} requests failed\n${why()}`);

    // The long stream: every byte, in order, once.
    const gotLine = JSON.parse(got.stdout.trim().split('\n').at(-1) ?? '{}') as { received?: number; sha256?: string; ms?: number };
    const sentLine = JSON.parse(sent.stdout.trim().split('\n').at(-1) ?? '{}') as { sent?: number; sha256?: string };
    assert.equal(sentLine.sent, STREAM_BYTES, `the server sent it all: ${sent.stdout}`);
    assert.equal(gotLine.received, STREAM_BYTES, `the client received it all: ${got.stdout}${got.stderr}`);
    assert.equal(gotLine.sha256, sentLine.sha256, 'the stream arrived byte-exact');
    assert.ok(gotLine.ms! > (replaced.at(-1)!.signalled - replaced[0]!.signalled), `the stream spanned the upgrades: it took ${gotLine.ms} ms, the upgrades ${replaced.at(-1)!.signalled - replaced[0]!.signalled} ms (agents started in ${replaced.map((r) => r.startMs).join(', ')} ms)`);

    // Every old agent drained and exited by itself (exit 0), long before the grace period would have cut.
    const drains: number[] = [];
    for (const r of replaced) {
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([exits.get(r.old)!, new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), (GRACE_S + 10) * 1000); })]);
      clearTimeout(timer);
      assert.ok(exit, `the old agent of ${r.node} exited`);
      assert.equal(exit.code, 0, `the old agent of ${r.node} exited cleanly:\n${r.old.stderr().slice(-2000)}`);
      assert.ok(exit.at - r.signalled < GRACE_S * 1000, 'it drained before the grace period');
      assert.doesNotMatch(r.old.stderr(), /"level":(50|60)/, `the old agent of ${r.node} logged no error`);
      drains.push(exit.at - r.signalled);
    }

    // No duplicate kernel attachments: the same links (adopted, never attached twice), one program per
    // cgroup attach type, the same pins, and no link anywhere runs a program of a replaced agent.
    const afterState = { n1: attachments(n1), n2: attachments(n2) };
    for (const k of ['n1', 'n2'] as const) {
      assert.deepEqual(afterState[k].cgroupLinkIds, before[k].cgroupLinkIds, `${k}: the cgroup links are the same ones`);
      assert.deepEqual(afterState[k].pinnedLinkIds, before[k].pinnedLinkIds, `${k}: the pinned links are the same ones`);
      assert.deepEqual(afterState[k].pins, before[k].pins, `${k}: the same pins`);
      assert.ok(Object.values(afterState[k].perType).every((n) => n === 1), `${k}: one program per attach type on the node's cgroup: ${JSON.stringify(afterState[k].perType)}`);
      assert.equal(Object.keys(afterState[k].perType).length, 6, `${k}: ${JSON.stringify(afterState[k].perType)}`);
      assert.equal(afterState[k].spliceLinks, 1, `${k}: one splice sockops link (the new agent's; the old agents' went with them)`);
    }
    const live = new Set([...afterState.n1.progIds, ...afterState.n2.progIds]);
    const stale = () => {
      const links = bpftoolJson(['link', 'show']).filter((l) => seenProgs.has(Number(l.prog_id)) && !live.has(Number(l.prog_id)));
      const progs = new Set(bpftoolJson(['prog', 'show']).map((p) => Number(p.id)));
      return { links: links.map((l) => l.id), progs: [...seenProgs].filter((id) => !live.has(id) && progs.has(id)) };
    };
    for (let i = 0; i < 100 && stale().progs.length > 0; i++) await sleep(50);
    assert.deepEqual(stale(), { links: [], progs: [] }, 'links or programs of replaced agents are still in the kernel');
    assert.ok(seenProgs.size > live.size, 'each successor loaded programs of its own (the check above looked at something)');

    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const starts = sorted(replaced.map((r) => r.startMs));
    process.stdout.write(`# upgrade: ${replaced.length} agent replacements; successor start->ready ms median ${starts[starts.length >> 1]}, max ${starts.at(-1)}; `
      + `SIGTERM->exit ms ${sorted(drains).join(' ')}; wrk ${w.requests} requests, 0 failed; loops ${samples.length} requests, 0 failed; `
      + `stream 1 GiB in ${gotLine.ms} ms, sha256 equal; wrk requests served by the last agent on node 2: ${wrkServed}\n`);
  });
});

/**
 * `weft local` (control plane and agent in one process) replaced the same way: a second one for the
 * same host and data directory starts while the first runs (its control plane takes a port of its
 * own, the first holds 15012), then the first gets SIGHUP and drains.
 */
describe('hitless weft local replacement', { skip: blocker ?? false }, () => {
  let lab: Lab, node: LabNode, a: LabPod, b: LabPod;
  let dir: string, configPath: string;
  const started: AgentHandle[] = [];
  const servers: PeerLogServer[] = [];

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'upg12l' });
    node = await lab.node('n1');
    a = await node.pod('a', { namespace: 'shop', serviceAccount: 'sa-a' });
    b = await node.pod('b', { namespace: 'shop', serviceAccount: 'sa-b' });
    dir = mkdtempSync(join(tmpdir(), 'weft-upg12l-'));
    configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'] }));
    servers.push(startPeerLogServer(b, 8080));
    await servers[0]!.ready;
  });

  after(async () => {
    if (blocker) return;
    for (const h of started) await h.kill('SIGKILL');
    if (node) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', node.name]);
    for (const s of servers) await s.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a second weft local starts beside the first, which drains on SIGHUP: no failed request, the same links', { timeout: 120_000 }, async () => {
    const first = startLocalAgent(node, configPath, ['--drain-grace', '60']);
    started.push(first);
    await first.ready;
    const exited = new Promise<number | null>((r) => first.process.once('exit', (code) => r(code)));
    const load = startSteadyLoad(a, [`http://${b.ip}:8080/local`], { pauseMs: 10, timeoutMs: 5_000 });
    let samples: LoadSample[] = [];
    let before: ReturnType<typeof attachments>;
    try {
      await load.running;
      for (let i = 0; i < 50 && !load.samples.some((s) => s.ok); i++) await sleep(100);
      before = attachments(node);
      const second = startLocalAgent(node, configPath, ['--drain-grace', '60']);
      started.push(second);
      await second.ready;
      assert.match(second.stderr(), /this control plane listens on a port of its own/, 'the successor\'s control plane took another port');
      first.process.kill('SIGHUP');
      await sleep(SETTLE_MS);
    } finally {
      samples = await load.stop();
    }
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<string>((r) => { timer = setTimeout(() => r('still running'), 70_000); })]);
    clearTimeout(timer);
    assert.equal(code, 0, `the first weft local drained and exited cleanly:\n${first.stderr().slice(-2000)}`);
    assert.ok(samples.filter((s) => s.ok).length > 20, `requests ran (${samples.length})`);
    assert.deepEqual(samples.filter((s) => !s.ok).slice(0, 5), [], 'no request failed');
    const afterState = attachments(node);
    assert.deepEqual(afterState.cgroupLinkIds, before.cgroupLinkIds, 'the cgroup links were adopted');
    assert.deepEqual(afterState.pinnedLinkIds, before.pinnedLinkIds);
    assert.ok(Object.values(afterState.perType).every((n) => n === 1), JSON.stringify(afterState.perType));
    assert.equal(afterState.spliceLinks, 1, 'one splice sockops link: the first agent\'s went with it');
  });
});
