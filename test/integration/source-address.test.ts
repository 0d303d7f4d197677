/**
 * Source address preservation on real namespaces, eBPF and transparent sockets: an application on
 * a meshed pod sees its client pod's own address and port, as without the mesh, whether the client
 * is on another node (HBONE: the port stated in `Forwarded: for=`) or on the same node (the
 * client's own socket), towards STRICT and PERMISSIVE pods. The delivering proxy connects from the
 * client's address (IP_TRANSPARENT) and the ingress program on the pod's interface hands the pod's
 * replies back to that socket. STRICT still refuses plaintext from outside the mesh; a taken
 * source port is replaced by another, never a failed connection; everything is removed afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startEchoServer, startHttpServer, tcpRequest, type ServerHandle } from '../../agent/sandbox';
import { startMesh, type MeshProcesses } from '../../agent/sandbox/weft-agent';
import { closeLabChecked } from '../support/lab-cleanup';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const ECHO_PORT = 7000;
const HTTP_PORT = 8080;

/**
 * Opens `n` connections at once from this pod (each from `localPort` when given), reads the echo
 * server's first line (`echo <pod> peer=<addr>:<port>`) on each, and prints one JSON array of
 * { local, line } or { local, error }. Bounded: every socket has a timeout. Each connection stays
 * open until all have their line, so the server holds them all at once: a 4-tuple is unique only
 * among connections open together (an ended one's can be used again, as the kernel does).
 */
const CLIENTS = `
const net = require('net');
const [host, port, n, localPort] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4] || 0)];
const out = [], socks = []; let left = n;
const done = (r) => { out.push(r); if (--left === 0) { socks.forEach((s) => s.destroy()); console.log(JSON.stringify(out)); } };
for (let i = 0; i < n; i++) {
  const s = net.connect({ host, port, ...(localPort ? { localPort } : {}) });
  socks.push(s);
  let buf = '', local = 0, over = false;
  const finish = (r) => { if (over) return; over = true; if (r.error) s.destroy(); done({ local, ...r }); };
  s.setTimeout(8000, () => finish({ error: 'timeout' }));
  s.on('connect', () => { local = s.localPort; });
  s.on('data', (d) => { buf += d; const nl = buf.indexOf('\\n'); if (nl >= 0) finish({ line: buf.slice(0, nl) }); });
  s.on('error', (e) => finish({ error: e.code || e.message }));
  s.on('close', () => finish({ error: 'closed before a line' }));
}`;

interface Seen { local: number; ip?: string; port?: number; pod?: string; error?: string }

/**
 * Holds one connection to each of the JSON targets ([{ host, port }]) from this pod. Prints each
 * line a connection receives as { i, line }, and { i, error } / { i, closed }; each line on stdin
 * is sent on every connection (suffixed with -i), `end` half-closes them all.
 */
const HOLDER = `
const net = require('net');
const socks = JSON.parse(process.argv[1]).map((t, i) => {
  const s = net.connect(t); let buf = '';
  s.setEncoding('utf8');
  s.on('data', (d) => { buf += d; let nl; while ((nl = buf.indexOf('\\n')) >= 0) { console.log(JSON.stringify({ i, line: buf.slice(0, nl) })); buf = buf.slice(nl + 1); } });
  s.on('error', (e) => console.log(JSON.stringify({ i, error: e.code || e.message })));
  s.on('close', () => console.log(JSON.stringify({ i, closed: true })));
  return s;
});
let cmd = '';
process.stdin.setEncoding('utf8').on('data', (d) => {
  cmd += d; let nl;
  while ((nl = cmd.indexOf('\\n')) >= 0) {
    const c = cmd.slice(0, nl); cmd = cmd.slice(nl + 1);
    if (c === 'end') socks.forEach((s) => s.end()); else socks.forEach((s, i) => s.write(c + '-' + i + '\\n'));
  }
});`;

interface HeldEvent { i: number; line?: string; error?: string; closed?: boolean }

/** Connections held from `from` to `targets` (HOLDER): what each received, a way to send on all, and to end them. */
function holdConnections(from: LabPod, targets: Array<{ host: string; port: number }>) {
  const child = from.spawn(process.execPath, ['-e', HOLDER, JSON.stringify(targets)]);
  const events: HeldEvent[] = [];
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const lines = out.split('\n');
    out = lines.pop()!;
    for (const l of lines) if (l.trim()) events.push(JSON.parse(l) as HeldEvent);
  });
  const until = async (what: string, ok: () => boolean, timeoutMs = 5_000) => {
    for (const end = Date.now() + timeoutMs; !ok();) {
      if (Date.now() > end) assert.fail(`${what} within ${timeoutMs} ms; the held connections saw: ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    events,
    until,
    send: (text: string) => child.stdin!.write(`${text}\n`),
    stop: () => { child.kill('SIGKILL'); },
  };
}

/** `n` concurrent connections from `from` to `host`:ECHO_PORT; what each server saw of its peer. */
async function connections(from: LabPod, host: string, n = 1, localPort = 0): Promise<Seen[]> {
  const r = await from.exec(process.execPath, ['-e', CLIENTS, host, String(ECHO_PORT), String(n), String(localPort)], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ local: number; line?: string; error?: string }>).map((c) => {
    const m = c.line && /^echo (\S+) peer=(.+):(\d+)$/.exec(c.line);
    return m ? { local: c.local, pod: m[1]!, ip: m[2]!, port: Number(m[3]) } : { local: c.local, error: c.error ?? `unexpected line ${JSON.stringify(c.line)}` };
  });
}

/** The node agent's weft_source_port_moved_total: of one reason, or of all. */
async function portMoves(node: LabNode, reason?: string): Promise<number> {
  const r = await node.exec('curl', ['-sS', '--max-time', '5', `http://${node.ip}:15020/metrics`], { timeoutMs: 8000 });
  assert.equal(r.code, 0, `scraping ${node.name}: ${r.stderr}`);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith(reason === undefined ? 'weft_source_port_moved_total{' : `weft_source_port_moved_total{reason="${reason}"}`));
  assert.ok(lines.length > 0, `${node.name} exports weft_source_port_moved_total${reason ? ` for ${reason}` : ''}`);
  return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('source address preservation', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode;
  let client: LabPod, near: LabPod, guard: LabPod, far: LabPod, outsider1: LabPod, outsider2: LabPod;
  let mesh: MeshProcesses;
  let dir: string, configPath: string;
  /** namespace `leaving`, on n1 and n2: added by the last tests */
  let stay1: LabPod, stay2: LabPod;
  const servers: ServerHandle[] = [];
  const strict = { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'locked' }, spec: { mtls: { mode: 'STRICT' } } };
  const redirectState = async (node: LabNode) =>
    JSON.parse((await node.exec('curl', ['-s', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 })).stdout);

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'src11' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    client = await n1.pod('client', { namespace: 'shop', serviceAccount: 'sa-client', ipv6: true });
    near = await n1.pod('near', { namespace: 'shop', serviceAccount: 'sa-near', ipv6: true });
    guard = await n1.pod('guard', { namespace: 'locked', serviceAccount: 'sa-guard', ipv6: true });
    far = await n2.pod('far', { namespace: 'locked', serviceAccount: 'sa-far', ipv6: true });
    outsider1 = await n1.pod('outsider1', { namespace: 'outside', ipv6: true });
    outsider2 = await n2.pod('outsider2', { namespace: 'outside', ipv6: true });
    dir = mkdtempSync(join(tmpdir(), 'weft-src11-'));
    configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked'], extra: [strict] }));
    for (const p of [near, guard, far, outsider1, outsider2]) servers.push(startEchoServer(p, ECHO_PORT, { family: 6 }));
    for (const p of [guard, far]) servers.push(startHttpServer(p, HTTP_PORT));
    await Promise.all(servers.map((s) => s.ready));
    mesh = await startMesh([n1, n2], configPath, join(dir, 'data'));
  });

  after(async () => {
    if (blocker) return;
    await mesh?.stop();
    rmSync(dir, { recursive: true, force: true });
    await closeLabChecked(lab, [n1, n2]);
  });

  const cases = [
    ['across nodes (HBONE) to a STRICT pod', () => far, 'far', 4],
    ['across nodes (HBONE) to a STRICT pod over IPv6', () => far, 'far', 6],
    ['on the same node to a PERMISSIVE pod', () => near, 'near', 4],
    ['on the same node to a STRICT pod', () => guard, 'guard', 4],
    ['on the same node to a STRICT pod over IPv6', () => guard, 'guard', 6],
  ] as const;
  for (const [label, target, name, family] of cases) {
    test(`${label}: the application sees the client pod's own address and port`, async () => {
      const dst = family === 4 ? target().ip : target().ip6!;
      const src = family === 4 ? client.ip : client.ip6!;
      const [c] = await connections(client, dst);
      assert.equal(c!.error, undefined, `connection failed: ${JSON.stringify(c)}`);
      assert.equal(c!.pod, name);
      assert.equal(c!.ip, src, 'the application sees the client pod, not the node proxy');
      assert.equal(c!.port, c!.local, 'and the client\'s own port (free here)');
      const destinationAgent = mesh.agents[target().node === n1 ? 0 : 1]!;
      const srcAddr = family === 4 ? `${src}:${c!.local}` : `[${src}]:${c!.local}`;
      const line = await destinationAgent.waitForLog((l) => l['src.addr'] === srcAddr && String(l['dst.addr']).endsWith(`:${ECHO_PORT}`) && l.decision === 'allow');
      assert.equal(line['src.identity'], 'spiffe://cluster.local/ns/shop/sa/sa-client');
    });
  }

  test('HTTP (parsed by the proxy, a connection of its own to the application) across nodes and on the same node: the application sees the client pod', async () => {
    for (const target of [far, guard]) {
      const r = await curl(client, `http://${target.ip}:${HTTP_PORT}/who`);
      assert.equal(r.status, 200, r.stderr);
      const body = JSON.parse(r.body);
      assert.equal(body.pod, target.name);
      assert.equal(body.remoteAddress, client.ip, `${target.name} saw ${body.remoteAddress}`);
    }
  });

  for (const [label, target] of [['across nodes', () => far], ['on the same node', () => guard]] as const) {
    test(`50 concurrent connections from one pod ${label} are all delivered, each seen from the pod's address and its own port (or another one the delivering agent counted as moved)`, async () => {
      const delivering = target().node;
      const before = await portMoves(delivering);
      const all = await connections(client, target().ip, 50);
      assert.equal(all.length, 50);
      const failed = all.filter((c) => c.error !== undefined);
      assert.deepEqual(failed, [], 'every connection delivered');
      assert.deepEqual(all.filter((c) => c.ip !== client.ip), [], 'every one from the client pod\'s address');
      // A port the client picked can be taken on the delivering node for this destination (an earlier
      // connection's 4-tuple in TIME_WAIT there): the agent moves that one to another port, and counts it.
      const moved = all.filter((c) => c.port !== c.local);
      const counted = (await portMoves(delivering)) - before;
      assert.equal(moved.length, counted, `every one from its own port, but those counted in weft_source_port_moved_total (${counted}): ${JSON.stringify(moved)}`);
      assert.equal(new Set(all.map((c) => c.port)).size, 50);
    });
  }

  test('a STRICT destination still refuses plaintext from a pod outside the mesh, on its node and from another', async () => {
    for (const [from, to] of [[outsider1, guard], [outsider2, far], [outsider1, far]] as const) {
      const r = await tcpRequest(from, to.ip, ECHO_PORT, { payload: 'x', timeoutMs: 1500 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
      assert.ok(r.code !== 0 || !r.stdout.includes('echo'), `plaintext from ${from.name} reached ${to.name}: ${r.stdout}`);
    }
  });

  test('a source port taken on the destination node: the connection comes from the same address and another port', async () => {
    // A listener in n1's namespace holds client.ip:PORT (a node process bound there, with ip_nonlocal_bind).
    const PORT = 45999;
    execFileSync('ip', ['netns', 'exec', n1.netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_nonlocal_bind=1']);
    const holder = n1.spawn(process.execPath, ['-e', `require('net').createServer().listen(${PORT}, '${client.ip}', () => console.log('held'))`]);
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`the port holder exited (${code})`)));
      });
      const movedBefore = await portMoves(n1, 'EADDRINUSE');
      const [c] = await connections(client, guard.ip, 1, PORT);
      assert.equal(c!.error, undefined, `connection failed: ${JSON.stringify(c)}`);
      assert.equal(c!.local, PORT, 'the client used the port asked for');
      assert.equal(c!.ip, client.ip);
      assert.notEqual(c!.port, PORT, 'the proxy moved to another port');
      assert.equal(await portMoves(n1, 'EADDRINUSE') - movedBefore, 1, 'and counted the move, by its reason');
    } finally {
      holder.kill('SIGKILL');
      execFileSync('ip', ['netns', 'exec', n1.netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_nonlocal_bind=0']);
    }
  });

  test('traffic the proxy did not open is left alone: pods outside the mesh talk directly, a meshed pod reaches an outside one', async () => {
    const [direct] = await connections(outsider2, outsider1.ip);
    assert.equal(direct!.error, undefined, JSON.stringify(direct));
    assert.equal(direct!.ip, outsider2.ip);
    const [passthrough] = await connections(client, outsider2.ip);
    assert.equal(passthrough!.error, undefined, JSON.stringify(passthrough));
    assert.equal(passthrough!.pod, 'outsider2');
  });

  test('/redirect names the steered addresses, including the STRICT pods\'; the kernel counted steered replies', async () => {
    const s2 = await redirectState(n2);
    assert.ok(s2.replies.addresses.includes(far.ip) && s2.replies.addresses.includes(far.ip6), JSON.stringify(s2.replies));
    assert.deepEqual(s2.replies.notSteered, []);
    assert.ok(!s2.capture.addresses.includes(far.ip), 'a STRICT pod is not captured, only its replies are steered');
    const [c] = await connections(client, far.ip);
    assert.equal(c!.ip, client.ip, JSON.stringify(c));
    const after2 = await redirectState(n2);
    // the SYN-ACK, the echo line and the FIN at least: the pod's replies went to the proxy's socket, not towards n1
    assert.ok(Number(after2.counters.capture_reply) >= Number(s2.counters.capture_reply) + 3, `${JSON.stringify(s2.counters)} -> ${JSON.stringify(after2.counters)}`);
    const s1 = await redirectState(n1);
    for (const p of [client, near, guard]) assert.ok(s1.replies.addresses.includes(p.ip), `${p.name}: ${JSON.stringify(s1.replies)}`);
    // the uplink is watched because PERMISSIVE pods are captured on n1; on n2 only pods are enrolled STRICT
    const uplink = (n: LabNode) => JSON.parse(execFileSync('ip', ['-n', n.netns, '-j', 'link', 'show', 'dev', 'eth0'], { encoding: 'utf8' }))[0].ifindex as number;
    assert.ok(s1.capture.interfaces.includes(uplink(n1)));
    assert.ok(!s2.capture.interfaces.includes(uplink(n2)), JSON.stringify(s2.capture));
  });

  test('a namespace leaving the mesh does not strand the connections already made from their clients\' addresses: they carry on (their pods\' addresses linger), and the addresses are released when they end', async () => {
    // Last in this file but two (which use them too): the pods it adds stay, out of the mesh.
    stay1 = await n1.pod('stay1', { namespace: 'leaving', serviceAccount: 'sa-stay' });
    stay2 = await n2.pod('stay2', { namespace: 'leaving', serviceAccount: 'sa-stay' });
    for (const p of [stay1, stay2]) servers.push(startEchoServer(p, ECHO_PORT));
    await Promise.all(servers.map((s) => s.ready));
    const until = async (what: string, ok: () => Promise<boolean>) => {
      for (const end = Date.now() + 10_000; !(await ok());) {
        if (Date.now() > end) assert.fail(`${what} within 10 s: n1 ${JSON.stringify((await redirectState(n1)).capture)}, n2 ${JSON.stringify((await redirectState(n2)).capture)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const captured = async (n: LabNode, p: LabPod) => (await redirectState(n)).capture.addresses.includes(p.ip) as boolean;
    const lingering = async (n: LabNode) => (await redirectState(n)).capture.lingering as string[];
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked', 'leaving'], extra: [strict] }));
    await until('both pods of namespace leaving enrolled', async () => (await captured(n1, stay1)) && (await captured(n2, stay2)));

    const meshed = holdConnections(client, [{ host: stay1.ip, port: ECHO_PORT }, { host: stay2.ip, port: ECHO_PORT }]);
    const plain = holdConnections(outsider1, [{ host: stay1.ip, port: ECHO_PORT }]);
    try {
      // each from its client's own address: on the same node, across nodes (HBONE), and a plaintext client captured inbound
      await meshed.until('both greetings', () => meshed.events.filter((e) => e.line?.startsWith('echo ')).length === 2);
      await plain.until('the greeting', () => plain.events.some((e) => e.line?.startsWith('echo ')));
      for (const e of [...meshed.events, ...plain.events]) assert.match(e.line ?? '', new RegExp(`^echo stay[12] peer=(${client.ip}|${outsider1.ip}):`), JSON.stringify(e));

      writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked'], extra: [strict] }));
      await until('the pods unenrolled', async () => !(await captured(n1, stay1)) && !(await captured(n2, stay2)));
      // A route change on the nodes (any pod starting or going does one) invalidates the input routes
      // the kernel cached on the proxy's sockets (early demux): from here, only the steering carries the pods' replies to them.
      for (const n of [n1, n2]) {
        execFileSync('ip', ['-n', n.netns, 'route', 'add', '203.0.113.0/24', 'dev', 'lo']);
        execFileSync('ip', ['-n', n.netns, 'route', 'del', '203.0.113.0/24', 'dev', 'lo']);
      }
      meshed.send('after');
      plain.send('after');
      await meshed.until('both echoes after the namespace left the mesh', () => ['after-0', 'after-1'].every((l) => meshed.events.some((e) => e.line === l)));
      await plain.until('the echo after the namespace left the mesh', () => plain.events.some((e) => e.line === 'after-0'));
      assert.deepEqual([...meshed.events, ...plain.events].filter((e) => e.error !== undefined || e.closed), [], 'no connection failed or closed');
      assert.deepEqual(await lingering(n1), [stay1.ip], 'n1 keeps the address of the pod its proxy still has connections with');
      assert.deepEqual(await lingering(n2), [stay2.ip]);

      meshed.send('end');
      plain.send('end');
      await meshed.until('both connections closed', () => meshed.events.filter((e) => e.closed).length === 2);
      await plain.until('the connection closed', () => plain.events.some((e) => e.closed));
      await until('the lingering addresses released', async () => (await lingering(n1)).length === 0 && (await lingering(n2)).length === 0);
    } finally {
      meshed.stop();
      plain.stop();
    }
    // out of the mesh now: a client outside it reaches them directly
    const [direct] = await connections(outsider2, stay2.ip);
    assert.equal(direct!.ip, outsider2.ip, JSON.stringify(direct));
  });

  test('a plaintext client whose pod leaves the mesh while the proxy waits for it to speak is served from the node\'s address, not left hanging', async () => {
    // The race behind a flake of the next test: n2 captured a plaintext connection to stay2, then applied
    // the pod's leaving during protocol detection, then connected from the client's address; the pod's
    // SYN-ACK went to the client and the connect hung. A long detection wait makes the order certain here.
    const slowDetection = { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: { protocolDetectionTimeoutMs: 5000 } };
    const steered = async (ip: string) => (await redirectState(n2)).capture.addresses.includes(ip) as boolean;
    const wait = async (what: string, ok: () => Promise<boolean>) => {
      for (const end = Date.now() + 10_000; !(await ok());) {
        if (Date.now() > end) assert.fail(`${what} within 10 s: n2 ${JSON.stringify((await redirectState(n2)).capture)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked', 'leaving'], extra: [strict, slowDetection] }));
    await wait('stay2 captured on n2', () => steered(stay2.ip));
    const held = holdConnections(outsider1, [{ host: stay2.ip, port: ECHO_PORT }]);
    try {
      // the server speaks first: the proxy waits the detection time for the client, which says nothing
      await new Promise((r) => setTimeout(r, 300));
      const left = Date.now();
      writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked'], extra: [strict, slowDetection] }));
      await wait('stay2 no longer captured on n2', async () => !(await steered(stay2.ip)));
      assert.ok(Date.now() - left < 4000, 'the pod left the mesh before the proxy stopped waiting, as this test needs');
      assert.equal(held.events.length, 0, `nothing reached the client yet: ${JSON.stringify(held.events)}`);
      await held.until('the greeting', () => held.events.some((e) => e.line !== undefined || e.error !== undefined || e.closed === true), 10_000);
      const peer = /^echo stay2 peer=(.+):\d+$/.exec(held.events.find((e) => e.line !== undefined)?.line ?? '')?.[1];
      assert.ok(peer !== undefined && peer !== outsider1.ip, `the greeting, from n2's own address (the pod saw ${peer}): ${JSON.stringify(held.events)}`);
      assert.deepEqual((await redirectState(n2)).capture.lingering, [], 'nothing lingers for it: the proxy never held the client\'s address');
    } finally {
      held.stop();
      writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop', 'locked'], extra: [strict] }));
    }
  });

  test('connections made while a namespace\'s label flips 30 times all succeed, on the same node and across nodes (the nodes apply each flip moments apart)', async () => {
    // Before IdentityManager's drop grace: 2-4 of 276-368 connections reset in 4 runs of 9 (the destination node had
    // dropped the pod's certificate while the source node still tunnelled to it). The linger is the previous test's.
    let on = false;
    let stop = false;
    const t0 = Date.now();
    const flips: string[] = [];
    const results: Array<Seen & { to: string; at: number }> = [];
    const loop = async (target: LabPod) => {
      while (!stop) {
        const at = Date.now() - t0;
        results.push(...(await connections(client, target.ip, 4)).map((c) => ({ ...c, to: target.name, at })));
      }
    };
    const loops = [loop(stay1), loop(stay2)];
    try {
      for (let i = 0; i < 30; i++) {
        on = !on;
        flips.push(`${on ? 'on' : 'off'}@${Date.now() - t0}`);
        writeFileSync(configPath, lab.yaml({ meshNamespaces: on ? ['shop', 'locked', 'leaving'] : ['shop', 'locked'], extra: [strict] }));
        await new Promise((r) => setTimeout(r, 150 + (i % 4) * 100));
      }
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    const failed = results.filter((c) => c.error !== undefined);
    const logged = mesh.agents.flatMap((a) => a.accessLog.filter((l) => l.error !== undefined && String(l['dst.addr']).startsWith('10.244.')).map((l) => JSON.stringify(l)));
    assert.ok(results.length >= 100, `only ${results.length} connections were made`);
    // What each agent applied and when (ms since the first flip), to read a failure against: a connection's batch
    // started at `at`; a flip is written at the time named, and each node applies it moments later.
    const applied = mesh.agents.map((a, i) => `n${i + 1}: ${a.stderr().split('\n').filter((l) => l.includes('redirect state changed'))
      .map((l) => { try { const j = JSON.parse(l) as { time: number; enrolled: number; unenrolled: number; lingering?: string[] }; return `+${j.enrolled}-${j.unenrolled}${j.lingering ? ` lingering ${j.lingering.join(',')}` : ''}@${j.time - t0}`; } catch { return l; } })
      .filter((l) => !/@-/.test(l)).join(' ')}`);
    assert.deepEqual(failed, [], `${failed.length} of ${results.length} failed; the agents logged:\n${logged.slice(-10).join('\n')}\nflips written: ${flips.join(' ')}\n`
      + `redirect state applied:\n${applied.join('\n')}`);
    for (const to of ['stay1', 'stay2']) assert.ok(results.some((c) => c.to === to && c.pod === to), `connections reached ${to}`);
  });
});
