/**
 * Same-node splicing end to end (docs/splice.md): one lab node running `weft local`, a client and
 * a STRICT server pod on it. A plain TCP connection between them is spliced in the kernel after
 * the proxy authorized it, once it has proven long-lived (a second exchange or 64 KiB): 1 GiB each way arrives byte-exact with half-close, the access log
 * counts every byte, STRICT admits the spliced bytes (they leave through the proxy's socket), HTTP
 * is not spliced, ProxyConfig can turn splicing off, a policy that now needs L7 closes a spliced
 * connection, and the agent leaves no splice map or program behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { PORTS as PORTS_AGENT } from '../../agent/node/ports';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING splice tests: ${blocker} ***\n\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const GiB = 2 ** 30;
const PORTS = { bulk: 7100, echo: 7101, download: 7102, http: 8080 };

/**
 * argv: bulk port, echo port, http port, download port. bulk: reads until the client's FIN
 * (hashing), then sends as many fresh random bytes as it read (hashing) and ends; prints one JSON
 * line per connection once it closes. echo: echoes. http: answers 200. download: reads a byte
 * count and a newline, sends that many fresh random bytes and ends; prints a JSON line.
 */
const SERVER = String.raw`
const net = require('net'), http = require('http'), crypto = require('crypto');
const [bulkPort, echoPort, httpPort, downloadPort] = process.argv.slice(1).map(Number);
function send(s, n, hash, done) {
  let left = n;
  const more = () => {
    while (left > 0) {
      const c = crypto.randomFillSync(Buffer.allocUnsafe(Math.min(left, 1 << 20)));
      left -= c.length; hash.update(c);
      if (!s.write(c)) return void s.once('drain', more);
    }
    s.end(); done();
  };
  more();
}
net.createServer({ allowHalfOpen: true }, (s) => {
  const rin = crypto.createHash('sha256'), rout = crypto.createHash('sha256');
  let got = 0, sent = 0, outSha = '';
  s.on('data', (c) => { got += c.length; rin.update(c); });
  s.on('end', () => send(s, got, rout, () => { sent = got; outSha = rout.digest('hex'); }));
  s.on('error', () => {});
  s.on('close', () => console.log(JSON.stringify({ ev: 'bulk', got, gotSha: rin.digest('hex'), sent, sentSha: outSha, peer: s.remoteAddress })));
}).listen(bulkPort, () => {
  net.createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(echoPort, () => {
    net.createServer({ allowHalfOpen: true }, (s) => {
      let line = '', started = false;
      s.on('error', () => {});
      s.on('data', (c) => {
        if (started) return;
        line += c.toString('latin1');
        if (!line.includes('\n')) return;
        started = true;
        const n = Number(line.split('\n')[0]), hash = crypto.createHash('sha256');
        send(s, n, hash, () => console.log(JSON.stringify({ ev: 'download', sent: n, sentSha: hash.digest('hex'), peer: s.remoteAddress })));
      });
    }).listen(downloadPort, () => {
      http.createServer((q, r) => r.end('ok')).listen(httpPort, () => console.log('listening'));
    });
  });
});`;

/** argv: host, port, bytes. Sends that many random bytes, half-closes, reads until the server's FIN; prints one JSON line. */
const BULK_CLIENT = String.raw`
const net = require('net'), crypto = require('crypto');
const [host, port, bytes] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const rout = crypto.createHash('sha256'), rin = crypto.createHash('sha256');
let left = Number(bytes), got = 0;
s.on('data', (c) => { got += c.length; rin.update(c); });
s.on('connect', () => {
  const more = () => {
    while (left > 0) {
      const c = crypto.randomFillSync(Buffer.allocUnsafe(Math.min(left, 1 << 20)));
      left -= c.length; rout.update(c);
      if (!s.write(c)) return void s.once('drain', more);
    }
    s.end();
  };
  more();
});
s.on('end', () => { console.log(JSON.stringify({ sent: Number(bytes) - left, sentSha: rout.digest('hex'), got, gotSha: rin.digest('hex') })); s.destroy(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });`;

/**
 * argv: host, port, bytes, rate (bytes per second). Asks the download server for that many bytes
 * and reads them at about that rate (the socket paused between 20 ms slices); prints one JSON line.
 */
const SLOW_CLIENT = String.raw`
const [host, port, bytes, rate] = process.argv.slice(1);
const s = require('net').connect({ host, port: Number(port), allowHalfOpen: true });
const hash = require('crypto').createHash('sha256');
let got = 0, slice = 0;
const per = Number(rate) / 50;
s.on('connect', () => s.write(bytes + '\n'));
s.on('data', (c) => { got += c.length; hash.update(c); if ((slice += c.length) >= per) { s.pause(); slice = 0; setTimeout(() => s.resume(), 20); } });
s.on('end', () => { console.log(JSON.stringify({ got, gotSha: hash.digest('hex') })); s.end(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });`;

/**
 * argv: host, port, bytes, when ('first': half-close right after the request; 'last': after the
 * download). Asks the download server for that many bytes, reads to its FIN; prints one JSON line.
 */
const DOWNLOAD_CLIENT = String.raw`
const [host, port, bytes, when] = process.argv.slice(1);
const s = require('net').connect({ host, port: Number(port), allowHalfOpen: true });
const hash = require('crypto').createHash('sha256');
const ask = bytes + '\n';
let got = 0;
s.on('connect', () => { s.write(ask); if (when === 'first') s.end(); });
s.on('data', (c) => { got += c.length; hash.update(c); });
s.on('end', () => { console.log(JSON.stringify({ asked: ask.length, got, gotSha: hash.digest('hex') })); if (when === 'first') s.destroy(); else s.end(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });`;

/**
 * argv: host, port, bytes, rate. Through an echo server: three small exchanges (the connection is
 * then spliced at the pods' sendmsg()), then sends that many bytes at once and reads the echo at
 * about `rate` bytes per second (the socket paused between 20 ms slices); prints one JSON line.
 */
const SLOW_ECHO_CLIENT = String.raw`
const [host, port, bytes, rate] = process.argv.slice(1);
const s = require('net').connect({ host, port: Number(port), allowHalfOpen: true });
const sent = require('crypto').createHash('sha256'), got = require('crypto').createHash('sha256');
let n = 0, nSent = 0, slice = 0, phase = 0, want = 0;
const per = Number(rate) / 50;
const send = (b) => { sent.update(b); nSent += b.length; return b; };
const step = () => {
  if (phase < 3) { phase++; want = n + 100; s.write(send(Buffer.alloc(100, phase))); return; }
  phase = 4; s.end(send(require('crypto').randomBytes(Number(bytes))));
};
s.on('connect', step);
s.on('data', (c) => {
  n += c.length; got.update(c);
  if (phase < 4) { if (n === want) step(); return; }
  if ((slice += c.length) >= per) { s.pause(); slice = 0; setTimeout(() => s.resume(), 20); }
});
s.on('end', () => { console.log(JSON.stringify({ nSent, nGot: n, same: sent.digest('hex') === got.digest('hex') })); s.destroy(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });`;

/** argv: host, port. Pings every 100 ms; prints 'open' at the first echo and 'closed <why>' when the connection ends. */
const HOLD_CLIENT = String.raw`
const [host, port] = process.argv.slice(1);
const s = require('net').connect(Number(port), host);
let opened = false, echoed = 0;
const t = setInterval(() => s.write('ping\n'), 100);
s.on('data', (d) => { echoed += d.length; if (!opened) { opened = true; console.log('open'); } });
const done = (why) => { clearInterval(t); console.log('closed ' + why + ' ' + echoed); process.exit(0); };
s.on('close', () => done('close')); s.on('error', (e) => done(e.code || e.message));
setTimeout(() => { console.log('still-open'); process.exit(0); }, 30000);`;

/**
 * argv: host, port, mode, bytes. Through an echo server, after three exchanges of up to 1 KiB (a
 * handshake): 'pingpong' sends a message of 1 B-64 KiB and waits for its echo before the next;
 * 'bursts' writes bursts of 1 B-256 KiB with 0-3 ms pauses without waiting (echoes come back meanwhile). Then half-closes and reads to the end; prints what
 * it sent and got, and whether they are the same bytes in the same order.
 */
const ECHO_CLIENT = String.raw`
const { createHash, randomBytes, randomInt } = require('crypto');
const [host, port, mode, total] = process.argv.slice(1);
const s = require('net').connect({ host, port: Number(port), allowHalfOpen: true });
const sent = createHash('sha256'), got = createHash('sha256');
let nSent = 0, nGot = 0, waiting = 0;
let exchanges = 0;
const next = () => {
  if (nSent >= Number(total)) return void s.end();
  // Both start with three small exchanges, as a protocol's handshake would: a second exchange before
  // 64 KiB is what gets a connection spliced at the pods' sendmsg() (spliceWay).
  const handshake = exchanges++ < 3;
  const pingpong = mode === 'pingpong' || handshake;
  const b = randomBytes(randomInt(1, handshake ? 1024 : pingpong ? 64 * 1024 : 256 * 1024));
  sent.update(b); nSent += b.length;
  if (pingpong) { waiting = b.length; s.write(b); return; }
  const go = () => setTimeout(next, randomInt(0, 4));
  if (s.write(b)) go(); else s.once('drain', go);
};
s.on('data', (c) => { got.update(c); nGot += c.length; if (waiting > 0 && (waiting -= c.length) === 0) next(); });
s.on('end', () => { const same = sent.digest('hex') === got.digest('hex') && nSent === nGot; console.log(JSON.stringify({ nSent, nGot, same })); s.destroy(); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
s.on('connect', next);`;

/** A process's CPU time so far (user + system), in seconds. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface SpliceState { sockets: number; movedBytes: string; podSide: boolean; entersClients: boolean; counters: Record<string, string>; spinHandovers: number; armSkipped: number; quietDestinations: number }

describe('same-node splicing in the kernel', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, cli: LabPod, srv: LabPod;
  let server: ChildProcess;
  const serverLines: Array<Record<string, unknown>> = [];
  let agent: AgentHandle;
  let dir: string, configPath: string;
  const extra = new Map<string, object>();

  const config = () => lab.yaml({
    meshNamespaces: ['mesh'],
    extra: [{
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'srv', namespace: 'mesh' },
      spec: { clusterIP: 'None', selector: { app: 'srv' }, ports: [
        { name: 'tcp-bulk', port: PORTS.bulk, targetPort: PORTS.bulk },
        { name: 'tcp-echo', port: PORTS.echo, targetPort: PORTS.echo },
        { name: 'tcp-download', port: PORTS.download, targetPort: PORTS.download },
        { name: 'http', port: PORTS.http, targetPort: PORTS.http },
      ] },
    },
    { apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'mesh' }, spec: { mtls: { mode: 'STRICT' } } },
    ...extra.values()],
  });
  const admin = async (path: string): Promise<Record<string, unknown>> => {
    const r = await n1.exec('curl', ['-sf', `http://127.0.0.1:15000${path}`], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const splice = async (): Promise<SpliceState> => {
    const s = (await admin('/redirect')).splice as SpliceState | null;
    assert.ok(s, 'the agent has no kernel side for splicing (see its log: "same-node splicing off")');
    return s;
  };
  /** One unlabelled series of the agent's /metrics (Prometheus text). */
  const metric = async (name: string): Promise<number> => {
    const r = await n1.exec('curl', ['-sf', `http://127.0.0.1:${PORTS_AGENT.metrics}/metrics`], { timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(r.stdout);
    assert.ok(m, `no series ${name} in /metrics`);
    return Number(m[1]);
  };
  /** Bytes of closed spliced connections the kernel carried (at the proxy's sockets or at the pods' sendmsg()), as their access-log lines count them. */
  const movedBytes = async () => BigInt((await splice()).movedBytes);
  const bulk = async (bytes: number) => {
    const before = serverLines.length;
    const r = await cli.exec(process.execPath, ['-e', BULK_CLIENT, srv.ip, String(PORTS.bulk), String(bytes)], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const client = JSON.parse(r.stdout.trim()) as { sent: number; sentSha: string; got: number; gotSha: string };
    for (let i = 0; i < 100 && serverLines.length === before; i++) await sleep(50);
    const seen = serverLines[before];
    assert.ok(seen, 'the server did not report the connection');
    return { client, server: seen as { got: number; gotSha: string; sent: number; sentSha: string; peer: string } };
  };
  /** The first access-log line from index `from` on that matches (bounded wait). */
  const nextLine = async (from: number, pred: (l: Record<string, unknown>) => boolean) => {
    for (let i = 0; i < 100; i++) {
      const line = agent.accessLog.slice(from).find(pred);
      if (line) return line;
      await sleep(50);
    }
    assert.fail(`no access-log line from index ${from} on matched: ${JSON.stringify(agent.accessLog.slice(from))}`);
  };
  /** Writes the config and waits (bounded) until the agent judges TCP from cli to srv as `expect`. */
  const enforce = async (expect: 'ALLOW' | 'DENY') => {
    writeFileSync(configPath, config());
    let last = '';
    for (let i = 0; i < 100; i++) {
      last = (await n1.exec(process.execPath, [WEFT_CLI, 'explain', 'mesh/cli', `mesh/srv:${PORTS.echo}`], { timeoutMs: 5000 })).stdout;
      if (last.startsWith(expect)) return;
      await sleep(100);
    }
    assert.fail(`the agent did not take the new policy: ${last}`);
  };
  /**
   * Splice maps and programs a process holds, by id: its fds' fdinfo names the map_id/prog_id
   * (bpftool here cannot list pids), bpftool names the object (kernel names stop at 15 chars).
   */
  const heldBy = (pid: number): Array<{ kind: 'map' | 'prog'; id: number; name: string }> => {
    const ids = { map: new Set<number>(), prog: new Set<number>() };
    for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
      let info: string;
      try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
      const m = /^(map|prog)_id:\s*(\d+)$/m.exec(info);
      if (m) ids[m[1] as 'map' | 'prog'].add(Number(m[2]));
    }
    const out: Array<{ kind: 'map' | 'prog'; id: number; name: string }> = [];
    for (const kind of ['map', 'prog'] as const) {
      const objs = JSON.parse(execFileSync('bpftool', ['-j', kind, 'show'], { encoding: 'utf8' }) || '[]') as Array<{ id: number; name?: string }>;
      for (const o of objs) if (ids[kind].has(o.id) && o.name?.startsWith('weft_splice')) out.push({ kind, id: o.id, name: o.name });
    }
    return out;
  };
  const exists = (kind: 'map' | 'prog', id: number) => spawnSync('bpftool', [kind, 'show', 'id', String(id)]).status === 0;

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'spl11' });
    n1 = await lab.node('n1');
    cli = await n1.pod('cli', { namespace: 'mesh', serviceAccount: 'cli', labels: { app: 'cli' }, ipv6: true });
    srv = await n1.pod('srv', { namespace: 'mesh', serviceAccount: 'srv', labels: { app: 'srv' }, ipv6: true });
    dir = mkdtempSync(join(tmpdir(), 'weft-spl11-'));
    configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, config());
    server = srv.spawn(process.execPath, ['-e', SERVER, String(PORTS.bulk), String(PORTS.echo), String(PORTS.http), String(PORTS.download)]);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the server pod\'s application did not listen within 8 s')), 8000);
      server.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const lines = out.split('\n');
        out = lines.pop()!;
        for (const l of lines) {
          if (l === 'listening') { clearTimeout(timer); resolve(); } else if (l.trim()) serverLines.push(JSON.parse(l) as Record<string, unknown>);
        }
      });
    });
    agent = startLocalAgent(n1, configPath);
    await agent.ready;
  });

  after(async () => {
    if (blocker) return;
    await agent?.kill('SIGKILL');
    if (n1) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n1.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a spliced connection moves 1 GiB each way byte-exact with half-close, into a STRICT pod; the access log counts every byte', async () => {
    const strictDropsBefore = (await admin('/redirect')).counters as Record<string, string>;
    const before = await movedBytes();
    const logged = agent.accessLog.length;
    const { client, server: seen } = await bulk(GiB);
    assert.equal(client.sent, GiB);
    assert.equal(seen.got, GiB, 'the server got every byte the client sent before its FIN');
    assert.equal(seen.gotSha, client.sentSha, 'client -> server bytes arrived in order, unchanged');
    assert.equal(client.got, GiB, 'the client got every byte the server sent after its half-close');
    assert.equal(client.gotSha, seen.sentSha, 'server -> client bytes arrived in order, unchanged');
    // The kernel moved them, at the pods' sendmsg() or at the proxy's sockets: a connection is
    // relayed only until it has proven long-lived, and a sender that is never idle (this upload) for
    // at most 16 MiB more before it goes over to the splice at the proxy's sockets.
    const moved = (await movedBytes()) - before;
    assert.ok(moved >= BigInt(2 * GiB - 64 * 2 ** 20), `the kernel moved only ${moved} of ${2 * GiB} bytes: the rest went through user space`);
    const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.bulk}`);
    assert.equal(line.bytes_sent, GiB, `access log: ${JSON.stringify(line)}; counters ${JSON.stringify((await splice()).counters)}`);
    assert.equal(line.bytes_recv, GiB, `access log: ${JSON.stringify(line)}; counters ${JSON.stringify((await splice()).counters)}`);
    assert.equal(line.decision, 'allow');
    assert.equal(line.error, undefined);
    const after = (await admin('/redirect')).counters as Record<string, string>;
    assert.equal(after.strict_drop_data, strictDropsBefore.strict_drop_data, 'STRICT dropped data segments during the spliced transfer');
    assert.equal((await splice()).sockets, 0, 'the spliced sockets left the sockhash when the connection closed');
  });

  test('small exchanges with half-close (the client\'s bytes relayed: one exchange is not worth a splice): each byte count is exact in the access log', async () => {
    for (const bytes of [0, 1, 1000, 65536 + 7]) {
      const logged = agent.accessLog.length;
      const { client, server: seen } = await bulk(bytes);
      assert.equal(seen.got, bytes);
      assert.equal(client.got, bytes);
      assert.equal(client.gotSha, seen.sentSha);
      assert.equal(seen.gotSha, client.sentSha);
      const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.bulk}`);
      assert.equal(line.bytes_sent, bytes);
      assert.equal(line.bytes_recv, bytes);
    }
  });

  /** An echo exchange through the agent: the client's report, the access-log line, and what the pods' side did meanwhile. */
  const echo = async (mode: 'pingpong' | 'bursts', bytes: number) => {
    const start = await splice();
    const before = start.counters;
    const logged = agent.accessLog.length;
    const r = await cli.exec(process.execPath, ['-e', ECHO_CLIENT, srv.ip, String(PORTS.echo), mode, String(bytes)], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.trim()) as { nSent: number; nGot: number; same: boolean };
    const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.echo}`);
    const end = await splice();
    const after = end.counters;
    const delta = (k: string) => BigInt(after[k]!) - BigInt(before[k]!);
    return { report, line, switched: delta('msg_switched'), moved: BigInt(end.movedBytes) - BigInt(start.movedBytes), skbBytes: delta('redirected_bytes') };
  };

  test('a download to a client that reads slowly: the server waits for it, without spinning; bytes exact', async () => {
    const bytes = 8 * 2 ** 20, before = serverLines.length;
    const start = await splice();
    const logged = agent.accessLog.length;
    const c0 = cpuSeconds(server.pid!);
    const t0 = Date.now();
    const r = await cli.exec(process.execPath, ['-e', SLOW_CLIENT, srv.ip, String(PORTS.download), String(bytes), String(4 * 2 ** 20)], { timeoutMs: 60_000 });
    const seconds = (Date.now() - t0) / 1000, used = cpuSeconds(server.pid!) - c0;
    assert.equal(r.code, 0, r.stderr);
    const client = JSON.parse(r.stdout.trim()) as { got: number; gotSha: string };
    for (let i = 0; i < 100 && serverLines.length === before; i++) await sleep(50);
    const seen = serverLines.slice(before).find((l) => l.ev === 'download') as { sentSha: string } | undefined;
    assert.equal(client.got, bytes);
    assert.equal(client.gotSha, seen?.sentSha);
    const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.download}`);
    const end = await splice();
    const delta = (k: string) => BigInt(end.counters[k]!) - BigInt(start.counters[k]!);
    const context = `server CPU ${used} s in ${seconds} s; access log ${JSON.stringify(line)}; moved ${BigInt(end.movedBytes) - BigInt(start.movedBytes)}; counters ${JSON.stringify(end.counters)}`;
    // The server's socket is armed before its first byte, so the download leaves by its own
    // sendmsg(); a full client socket answers EAGAIN while the server's own socket stays writable,
    // and the server retried at once: 0.65 s of CPU in this 1.4 s download without the watchdog,
    // which hands such a connection to the relay and TCP's backpressure (docs/splice.md, "Backpressure").
    assert.ok(delta('msg_switched') >= 1n, `the download did not leave by the server's sendmsg(): ${context}`);
    assert.ok(used < 0.15 * seconds, `the server spun while its client read slowly: ${context}`);
    assert.equal(end.spinHandovers - start.spinHandovers, 1, `the watchdog's handover was not counted: ${context}`);
    assert.equal(await metric('weft_splice_spin_handovers_total'), end.spinHandovers, 'the handovers in /metrics');
    assert.equal(line.bytes_sent, String(bytes).length + 1, context);
    assert.equal(line.bytes_recv, bytes, context);
    assert.equal(line.error, undefined, context);
  });
  for (const family of [4, 6] as const) {
    test(`a download leaves by the server's own sendmsg() from its first byte, IPv${family}: no byte through user space, bytes exact`, async () => {
      const host = family === 4 ? srv.ip : srv.ip6!;
      for (const when of ['first', 'last'] as const) {
        const bytes = 256 * 2 ** 20 + 7;
        const start = await splice();
        const logged = agent.accessLog.length;
        const before = serverLines.length;
        const r = await cli.exec(process.execPath, ['-e', DOWNLOAD_CLIENT, host, String(PORTS.download), String(bytes), when], { timeoutMs: 120_000 });
        assert.equal(r.code, 0, r.stderr);
        const client = JSON.parse(r.stdout.trim()) as { asked: number; got: number; gotSha: string };
        for (let i = 0; i < 100 && serverLines.length === before; i++) await sleep(50);
        const seen = serverLines.slice(before).find((l) => l.ev === 'download') as { sent: number; sentSha: string; peer: string } | undefined;
        assert.ok(seen, 'the server did not report the download');
        assert.equal(client.got, bytes, `${when}: the client got every byte`);
        assert.equal(client.gotSha, seen.sentSha, `${when}: the bytes arrived in order, unchanged`);
        assert.equal(seen.peer.replace(/^::ffff:/, ''), family === 4 ? cli.ip : cli.ip6, 'the server saw the client pod');
        const line = await nextLine(logged, (l) => l['dst.addr'] === (family === 4 ? `${host}:${PORTS.download}` : `[${host}]:${PORTS.download}`));
        const end = await splice();
        const delta = (k: string) => BigInt(end.counters[k]!) - BigInt(start.counters[k]!);
        const context = `access log ${JSON.stringify(line)}; counters ${JSON.stringify(end.counters)}`;
        assert.equal(line.bytes_sent, client.asked, context);
        assert.equal(line.bytes_recv, bytes, context);
        assert.equal(line.error, undefined, context);
        // A client that half-closed before the upstream connected cannot be armed: the kernel takes
        // no socket past ESTABLISHED into a sockhash (EOPNOTSUPP). Relayed, the counts stay exact.
        if (when === 'first') continue;
        // Every byte of the download went out of the client's socket from the server's sendmsg():
        // none through this process, none through the splice at the proxy's sockets.
        assert.equal(BigInt(end.movedBytes) - BigInt(start.movedBytes), BigInt(bytes), context);
        assert.ok(delta('msg_switched') >= 1n, context);
        assert.equal(delta('redirected_bytes'), 0n, context);
        assert.equal(end.spinHandovers - start.spinHandovers, 0, `a reader at full speed was handed back to the relay: ${context}`);
        assert.equal(end.sockets, 0, 'the client\'s socket left the sockhash when the connection closed');
        assert.equal(BigInt(await metric('weft_splice_moved_bytes_total')), BigInt(end.movedBytes), 'the bytes the kernel carried, in /metrics');
      }
    });
  }

  test('a port whose last 16 connections were short is no longer armed; a download to it is carried anyway, bytes exact, and arms it again', async () => {
    const download = async (bytes: number) => {
      const logged = agent.accessLog.length;
      const start = await splice();
      const r = await cli.exec(process.execPath, ['-e', DOWNLOAD_CLIENT, srv.ip, String(PORTS.download), String(bytes), 'last'], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      const client = JSON.parse(r.stdout.trim()) as { got: number };
      assert.equal(client.got, bytes);
      const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.download}`);
      assert.equal(line.bytes_recv, bytes, JSON.stringify(line));
      const end = await splice();
      return { skipped: end.armSkipped - start.armSkipped, moved: BigInt(end.movedBytes) - BigInt(start.movedBytes), skb: BigInt(end.counters.redirected_bytes!) - BigInt(start.counters.redirected_bytes!), quiet: end.quietDestinations };
    };
    // Sixteen short connections in a row: each still armed (the port's last connection, in the test before, was a download).
    for (let i = 0; i < 16; i++) assert.equal((await download(1000)).skipped, 0, `short connection ${i}`);
    const short = await download(1000);
    assert.deepEqual([short.skipped, short.quiet], [1, 1], 'the 17th short connection was not armed');
    // A download to the quiet port: not armed, so not carried by the server's sendmsg() alone, but whole.
    const bytes = 64 * 2 ** 20 + 3;
    const unarmed = await download(bytes);
    assert.equal(unarmed.skipped, 1);
    assert.ok(unarmed.moved < BigInt(bytes), `an unarmed download was carried by the server's sendmsg() alone: ${unarmed.moved}`);
    // ...and it re-armed the port: the next download leaves by the server's sendmsg() from its first byte.
    const armed = await download(bytes);
    assert.deepEqual([armed.skipped, armed.quiet], [0, 0]);
    assert.equal(armed.moved, BigInt(bytes));
    assert.equal(armed.skb, 0n);
    assert.equal(await metric('weft_splice_arm_skipped_total'), (await splice()).armSkipped, 'the skipped arming in /metrics');
  });

  test('a connection switched at the pods\' sendmsg() whose reader falls behind: the writer waits, without spinning; bytes exact', async () => {
    const start = await splice();
    const logged = agent.accessLog.length;
    const c0 = cpuSeconds(server.pid!), t0 = Date.now();
    const r = await cli.exec(process.execPath, ['-e', SLOW_ECHO_CLIENT, srv.ip, String(PORTS.echo), String(8 * 2 ** 20), String(4 * 2 ** 20)], { timeoutMs: 60_000 });
    const seconds = (Date.now() - t0) / 1000, used = cpuSeconds(server.pid!) - c0;
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.trim()) as { nSent: number; nGot: number; same: boolean };
    assert.ok(report.same, `the echoed bytes differ from those sent: ${JSON.stringify(report)}`);
    const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.echo}`);
    const end = await splice();
    const delta = (k: string) => BigInt(end.counters[k]!) - BigInt(start.counters[k]!);
    const context = `echo server CPU ${used} s in ${seconds} s; access log ${JSON.stringify(line)}; counters ${JSON.stringify(end.counters)}`;
    assert.ok(delta('msg_switched') >= 1n, `the connection did not switch at the pods' sendmsg(): ${context}`);
    // Without the watchdog the echo server spun on EAGAIN: 0.47 s of CPU in 1.47 s, 148,904 redirects.
    assert.ok(used < 0.15 * seconds, `the echo server spun while its client read slowly: ${context}`);
    assert.equal(end.spinHandovers - start.spinHandovers, 1, `the watchdog's handover was not counted: ${context}`);
    assert.equal(line.bytes_sent, report.nSent, context);
    assert.equal(line.bytes_recv, report.nGot, context);
    assert.equal(end.sockets, 0, 'the proxy\'s sockets left the sockhash when the connection closed');
  });

  test('a request-response connection is spliced at the pods\' own sendmsg(): both pods\' sockets switch, bytes exact', async () => {
    const { report, line, switched, moved, skbBytes } = await echo('pingpong', 8 * 2 ** 20);
    assert.ok(report.same, `the echoed bytes differ from those sent: ${JSON.stringify(report)}`);
    assert.ok(switched >= 2n, `pod sockets switched to the kernel: ${switched} (expected both); counters ${JSON.stringify((await splice()).counters)}; agent log: ${agent.stderr().split('\n').filter((l) => l.includes('splic')).join(' / ')}`);
    // Only the first exchanges (messages of 64 KiB at most) go through the proxy: the rest leave by the pods' sendmsg().
    assert.ok(moved >= BigInt(2 * report.nSent - 2 ** 20), `the kernel carried only ${moved} of ${2 * report.nSent} bytes`);
    assert.equal(skbBytes, 0n, 'the connection went to the splice at the proxy\'s sockets');
    assert.equal(line.bytes_sent, report.nSent, `access log: ${JSON.stringify(line)}`);
    assert.equal(line.bytes_recv, report.nGot, `access log: ${JSON.stringify(line)}`);
    assert.equal(line.error, undefined);
    assert.equal((await splice()).sockets, 0, 'the proxy\'s sockets left the sockhash when the connection closed');
  });

  test('bursts with pauses while echoes flow back: a pod socket switches mid-stream and order holds both ways', async () => {
    for (let i = 0; i < 3; i++) {
      const { report, line, switched, moved } = await echo('bursts', 16 * 2 ** 20);
      assert.ok(report.same, `round ${i}: the echoed bytes differ from those sent: ${JSON.stringify(report)}`);
      assert.ok(switched >= 1n, `round ${i}: no pod socket switched to the kernel`);
      assert.ok(moved > 0n, `round ${i}: the kernel carried no byte`);
      assert.equal(line.bytes_sent, report.nSent, `round ${i}: access log: ${JSON.stringify(line)}`);
      assert.equal(line.bytes_recv, report.nGot, `round ${i}: access log: ${JSON.stringify(line)}`);
    }
  });

  test('HTTP between the same pods is not spliced (its requests are judged and reported one by one)', async () => {
    const before = await movedBytes();
    const r = await curl(cli, `http://${srv.ip}:${PORTS.http}/x`);
    assert.equal(r.status, 200, r.stderr);
    const line = await agent.waitForLog((l) => l.path === '/x');
    assert.equal(line.status, 200);
    assert.equal(await movedBytes(), before, 'an HTTP connection went through the kernel splice');
  });

  test('ProxyConfig spec.sameNodeSplice: false relays in user space, with the same exact bytes', async () => {
    extra.set('proxy-config', { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: { sameNodeSplice: false } });
    writeFileSync(configPath, config());
    try {
      // Bounded wait until the agent has the new config: a connection is then relayed (the kernel moves no byte).
      let relayed = false;
      for (let i = 0; i < 50 && !relayed; i++) {
        const before = await movedBytes();
        const { client, server: seen } = await bulk(256 * 1024);
        assert.equal(client.gotSha, seen.sentSha);
        assert.equal(seen.gotSha, client.sentSha);
        relayed = (await movedBytes()) === before;
        if (!relayed) await sleep(100);
      }
      assert.ok(relayed, 'connections were still spliced after spec.sameNodeSplice: false');
      const state = await splice();
      assert.equal(state.entersClients, false, 'the pods\' client sockets are no longer entered in weft_splice_pods');
      const before = await movedBytes();
      const logged = agent.accessLog.length;
      const { client, server: seen } = await bulk(64 * 2 ** 20);
      assert.equal(client.gotSha, seen.sentSha);
      assert.equal(seen.gotSha, client.sentSha);
      assert.equal(await movedBytes(), before);
      assert.equal((await splice()).counters.pod_sockets, state.counters.pod_sockets, 'a connection made while splicing is off put no socket in weft_splice_pods');
      const line = await nextLine(logged, (l) => l['dst.addr'] === `${srv.ip}:${PORTS.bulk}`);
      assert.equal(line.bytes_recv, 64 * 2 ** 20);
    } finally {
      extra.delete('proxy-config');
      writeFileSync(configPath, config());
    }
  });

  test('a spliced connection that a new L7 policy now needs is closed, and new ones are refused', async () => {
    // Wait until splicing is back on (the previous test turned it off): an echo exchange is spliced.
    for (let i = 0; i < 50; i++) {
      if ((await echo('pingpong', 256 * 1024)).moved > 0n) break;
      await sleep(100);
    }
    assert.equal((await splice()).entersClients, true, 'back on, the pods\' client sockets are entered again');
    const holder = cli.spawn(process.execPath, ['-e', HOLD_CLIENT, srv.ip, String(PORTS.echo)]);
    let out = '';
    holder.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<void>((r) => holder.once('exit', () => r()));
    for (let i = 0; i < 50 && !out.includes('open'); i++) await sleep(100);
    assert.ok(out.includes('open'), `the echo connection did not open: ${out}`);
    // Spliced from its second exchange on (the first is relayed: spliceWay).
    let sockets = 0;
    for (let i = 0; i < 50 && sockets !== 2; i++) {
      sockets = (await splice()).sockets;
      if (sockets !== 2) await sleep(100);
    }
    assert.equal(sockets, 2, 'the echo connection is spliced (two sockets in the sockhash)');
    // An ALLOW policy whose only rule needs HTTP (a method): a plain TCP connection matches no rule.
    extra.set('l7', { apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'get-only', namespace: 'mesh' },
      spec: { selector: { matchLabels: { app: 'srv' } }, action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] } });
    try {
      await enforce('DENY');
      await exited;
      assert.match(out, /closed /, `the spliced connection was not closed: ${out}`);
      const closed = await agent.waitForLog((l) => l['dst.addr'] === `${srv.ip}:${PORTS.echo}` && typeof l.error === 'string' && l.error.includes('policy now denies'));
      assert.equal(closed.decision, 'deny');
      // What the access log counts is what the echo server sent back (the client counted the same).
      const echoed = Number(/closed \S+ (\d+)/.exec(out)?.[1]);
      assert.equal(closed.bytes_recv, echoed, `the client got ${echoed} bytes, the log says ${closed.bytes_recv}`);
      assert.equal((await splice()).sockets, 0, 'the closed connection left the sockhash');
      const before = await movedBytes();
      const again = await cli.exec(process.execPath, ['-e', BULK_CLIENT, srv.ip, String(PORTS.bulk), '10'], { timeoutMs: 10_000 });
      assert.notEqual(again.code, 0, 'a new TCP connection was let through');
      assert.equal(await movedBytes(), before);
    } finally {
      extra.delete('l7');
      await enforce('ALLOW');
    }
  });

  test('the splice maps and program belong to the agent process and go with it; nothing is pinned', async () => {
    const held = heldBy(agent.process.pid!);
    const names = held.map((o) => `${o.kind} ${o.name}`).sort();
    // the maps' names as the kernel keeps them (15 characters)
    assert.deepEqual(names, ['map weft_splice_act', 'map weft_splice_bas', 'map weft_splice_con', 'map weft_splice_cou', 'map weft_splice_exp',
      'map weft_splice_flo', 'map weft_splice_pee', 'map weft_splice_pod', 'map weft_splice_rel', 'map weft_splice_soc',
      'prog weft_splice_msg', 'prog weft_splice_sockops', 'prog weft_splice_verdict'],
      `the running agent's splice objects: ${names.join(', ')}`);
    const pinRoot = `/sys/fs/bpf/weft/${n1.name}`;
    const pins = existsSync(pinRoot) ? readdirSync(pinRoot, { recursive: true }).map(String) : [];
    assert.deepEqual(pins.filter((p) => p.includes('splice')), [], 'a splice object is pinned');
    await agent.kill('SIGTERM');
    // The kernel frees an object once its last reference is gone (bounded wait for deferred frees).
    let left = held;
    for (let i = 0; i < 50 && left.length > 0; i++) {
      left = left.filter((o) => exists(o.kind, o.id));
      if (left.length > 0) await sleep(100);
    }
    assert.deepEqual(left, [], 'splice objects outlived the agent');
    agent = startLocalAgent(n1, configPath);
    await agent.ready;
    // 64 MiB: a young connection's first bytes are relayed, and the handover reads what waits.
    const { client, server: seen } = await bulk(64 * 2 ** 20);
    assert.equal(seen.gotSha, client.sentSha, `client -> server: ${JSON.stringify({ client, seen })}`);
    assert.equal(client.gotSha, seen.sentSha, `server -> client: ${JSON.stringify({ client, seen })}`);
    assert.ok((await movedBytes()) > 0n, 'a restarted agent splices again');
  });
});
