/**
 * Floods against the tunnel port 15008 from a pod outside the mesh (no certificate): slowloris (a
 * ClientHello dribbled a byte at a time), half-open TCP connections that never speak, and TLS
 * handshake floods (real ClientHellos naming a local workload, so the proxy does the expensive half
 * of the handshake, that never finish). Each is held: the proxy closes every attacking connection
 * by its handshake timeout, its health port answers, and a quiet meshed pair on the same nodes keeps
 * being served (every request succeeds; its latency is printed next to the quiet baseline).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, startHttpServer } from '../../agent/sandbox';
import { startMesh, type MeshProcesses } from '../../agent/sandbox/weft-agent';
import { sniFor } from '../../agent/tunnel/sni';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
/** HboneServer's handshakeTimeout (agent/tunnel/hbone-server.ts); an attacking connection must be gone by then plus slack. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const FLOOD_MS = 8_000;

/** Sequential HTTP requests on fresh connections for `ms`: counts, failures by reason, latency quantiles. */
const QUIET = `
const http = require('http');
const [host, port, ms] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const until = Date.now() + ms; const lat = []; const failures = {}; let total = 0;
const once = () => new Promise((resolve) => {
  const t0 = process.hrtime.bigint(); total++;
  const fail = (why) => { failures[why] = (failures[why] || 0) + 1; resolve(); };
  const req = http.get({ host, port, path: '/quiet', agent: false, timeout: 5000 }, (res) => {
    res.resume();
    res.on('end', () => { if (res.statusCode === 200) { lat.push(Number(process.hrtime.bigint() - t0) / 1e6); resolve(); } else fail('status ' + res.statusCode); });
    res.on('error', (e) => fail(e.code || e.message));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => fail(e.code || e.message));
});
(async () => {
  for (let i = 0; i < 100000 && Date.now() < until; i++) await once();
  lat.sort((a, b) => a - b);
  const q = (p) => lat.length ? Number(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2)) : null;
  console.log(JSON.stringify({ total, ok: lat.length, failures, p50: q(0.5), p99: q(0.99) }));
})();`;

/**
 * The attacker. mode: halfopen | slowloris | tlsflood. Opens connections to host:port for floodMs,
 * then waits up to holdMs for the server to close them, and reports how many it closed and when.
 */
const ATTACK = `
const net = require('net'); const tls = require('tls'); const { Duplex } = require('stream');
const [mode, host, port, count, floodMs, holdMs, sni] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]), process.argv[7]];
const hello = () => new Promise((resolve) => {
  const d = new Duplex({ read() {}, write(c, e, cb) { resolve(Buffer.from(c)); cb(); } });
  const t = tls.connect({ socket: d, servername: sni, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', rejectUnauthorized: false });
  t.on('error', () => {}); setTimeout(() => t.destroy(), 50);
});
const stats = { opened: 0, connectErrors: 0, closedByServer: 0, serverSentBytes: 0, maxLifeMs: 0, open: 0, peakOpen: 0 };
const live = new Set(); const started = Date.now(); let flooding = true;
function open(hellos, i) {
  const s = net.connect(port, host); const t0 = Date.now(); let ours = false; let drip;
  live.add(s); stats.opened++; stats.open++; stats.peakOpen = Math.max(stats.peakOpen, stats.open);
  s.on('connect', () => {
    const h = hellos[i % hellos.length];
    if (mode === 'tlsflood') s.write(h);
    if (mode === 'slowloris') { let at = 0; drip = setInterval(() => { if (at < h.length) s.write(h.subarray(at, ++at)); }, 500); }
  });
  s.on('data', (d) => { stats.serverSentBytes += d.length; });
  s.on('error', (e) => { if (e.code === 'ECONNREFUSED' || e.code === 'EADDRNOTAVAIL') stats.connectErrors++; });
  s.on('close', () => {
    clearInterval(drip); live.delete(s); stats.open--;
    if (!ours) { stats.closedByServer++; stats.maxLifeMs = Math.max(stats.maxLifeMs, Date.now() - t0); }
    if (mode === 'tlsflood' && flooding) open(hellos, i + 1);
  });
  s.cut = () => { ours = true; clearInterval(drip); s.destroy(); };
}
(async () => {
  const hellos = [];
  for (let i = 0; i < 16; i++) hellos.push(await hello());
  for (let i = 0; i < count && Date.now() - started < floodMs; i++) { open(hellos, i); if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20)); }
  await new Promise((r) => setTimeout(r, Math.max(0, floodMs - (Date.now() - started))));
  flooding = false;
  const deadline = Date.now() + holdMs;
  while (live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  stats.stillOpenAfterHold = live.size;
  for (const s of live) s.cut();
  console.log(JSON.stringify(stats));
})();`;

interface QuietResult { total: number; ok: number; failures: Record<string, number>; p50: number | null; p99: number | null }
interface AttackResult { opened: number; connectErrors: number; closedByServer: number; serverSentBytes: number; maxLifeMs: number; peakOpen: number; stillOpenAfterHold: number }

describe('floods against the tunnel port 15008', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, a: LabPod, b: LabPod, mallory: LabPod;
  let mesh: MeshProcesses | undefined;
  let dir: string;
  let baseline: QuietResult;

  const quiet = async (ms: number): Promise<QuietResult> => {
    const r = await a.exec(process.execPath, ['-e', QUIET, b.ip, '8080', String(ms)], { timeoutMs: ms + 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as QuietResult;
  };
  const attack = async (mode: string, count: number): Promise<AttackResult> => {
    const hold = HANDSHAKE_TIMEOUT_MS + 5_000;
    const r = await mallory.exec(process.execPath, ['-e', ATTACK, mode, n2.ip, '15008', String(count), String(FLOOD_MS), String(hold), sniFor('spiffe://cluster.local/ns/shop/sa/sa-b')],
      { timeoutMs: FLOOD_MS + hold + 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as AttackResult;
  };
  const tunnelSockets = async (): Promise<number> => {
    const r = await n2.exec('ss', ['-Htn', 'state', 'established', '( sport = :15008 )'], { timeoutMs: 5000 });
    return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  };

  /** Runs `mode` from mallory while the quiet pair is measured and the health port is probed. */
  async function flood(mode: string, count: number): Promise<{ attack: AttackResult; during: QuietResult; healthy: number[]; peakSockets: number }> {
    const attacking = attack(mode, count);
    await new Promise((r) => setTimeout(r, 1_000));
    const healthy: number[] = [];
    let peakSockets = 0;
    const probing = (async () => {
      for (let i = 0; i < 6; i++) {
        const r = await n2.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://${n2.ip}:15021/healthz/ready`], { timeoutMs: 10_000 });
        healthy.push(Number(r.stdout));
        peakSockets = Math.max(peakSockets, await tunnelSockets());
      }
    })();
    const during = await quiet(FLOOD_MS - 2_000);
    await probing;
    const result = await attacking;
    console.log(`${mode}: attack ${JSON.stringify(result)}; ${peakSockets} established on 15008 at the peak seen; quiet pair during it ${JSON.stringify(during)} (baseline ${JSON.stringify(baseline)})`);
    return { attack: result, during, healthy, peakSockets };
  }

  /** The quiet pair was served throughout, health answered, every attacking connection was closed by the proxy in time. */
  function assertHeld(mode: string, r: Awaited<ReturnType<typeof flood>>): void {
    assert.ok(r.during.total >= 10, `${mode}: the quiet client made only ${r.during.total} requests`);
    assert.equal(r.during.ok, r.during.total, `${mode}: the quiet pair failed during the flood: ${JSON.stringify(r.during.failures)}`);
    assert.deepEqual(r.healthy.filter((s) => s !== 200), [], `${mode}: 15021/healthz/ready answered ${r.healthy.join(', ')}`);
    assert.ok(r.attack.opened > 0 && r.attack.connectErrors === 0, `${mode}: the attack could not connect: ${JSON.stringify(r.attack)}`);
    assert.equal(r.attack.stillOpenAfterHold, 0, `${mode}: ${r.attack.stillOpenAfterHold} attacking connections were still open ${HANDSHAKE_TIMEOUT_MS + 5_000} ms after the flood`);
    assert.equal(r.attack.closedByServer, r.attack.opened, `${mode}: the proxy closed ${r.attack.closedByServer} of ${r.attack.opened} attacking connections`);
  }

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'fzz' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    a = await n1.pod('a', { namespace: 'shop', serviceAccount: 'sa-a' });
    mallory = await n1.pod('mallory', { namespace: 'legacy' });
    b = await n2.pod('b', { namespace: 'shop', serviceAccount: 'sa-b' });
    dir = mkdtempSync(join(tmpdir(), 'weft-floods-'));
    writeFileSync(join(dir, 'mesh.yaml'), lab.yaml({ meshNamespaces: ['shop'] }));
    const server = startHttpServer(b, 8080);
    await server.ready;
    mesh = await startMesh([n1, n2], join(dir, 'mesh.yaml'), join(dir, 'data'));
    baseline = await quiet(3_000);
    assert.equal(baseline.ok, baseline.total, `the quiet pair fails without any flood: ${JSON.stringify(baseline.failures)}`);
  });

  after(async () => {
    if (blocker) return;
    await mesh?.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('half-open TCP flood (2000 connections that never speak) is held', async () => {
    assertHeld('halfopen', await flood('halfopen', 2_000));
  });

  test('slowloris (500 ClientHellos dribbled a byte every 500 ms) is held', async () => {
    assertHeld('slowloris', await flood('slowloris', 500));
  });

  test('TLS handshake flood (1000 concurrent ClientHellos naming a local workload, never finished) is held', async () => {
    const r = await flood('tlsflood', 1_000);
    assert.ok(r.attack.serverSentBytes > 0, 'the proxy answered the ClientHellos (the flood reached the expensive half of the handshake)');
    assertHeld('tlsflood', r);
  });

  test('after the floods the proxy holds no attacking connection and still serves the pair', async () => {
    const left = await tunnelSockets();
    assert.ok(left <= 4, `${left} connections established on 15008 after the floods`);
    const r = await quiet(2_000);
    assert.equal(r.ok, r.total, JSON.stringify(r.failures));
  });
});
