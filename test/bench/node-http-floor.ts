/**
 * The floor under the node proxy's L7 path: what Node.js's own http and http2 modules cost per
 * proxied request, with nothing of Weft (no tunnel, TLS, policy or access log). One process runs
 * the barest proxy those modules allow (an http server forwarding through a keep-alive http.Agent;
 * an http2 server forwarding each stream to one h2c client session), on loopback, in front of an
 * application in another process; wrk and h2load load it as http-hop.ts does (16 connections;
 * HTTP/2 with 10 streams each). Printed: req/s and the proxy process's CPU µs per request.
 * Beside them, Weft's own HTTP/1 layer (serveHttp: llhttp driven directly, agent/http/http1-direct.ts)
 * in the same place, allowing everything, without a log: what it costs against Node's objects.
 *
 * `node dist/test/bench/node-http-floor.js` (about 12 s). Loopback only; the processes it starts
 * are ended when it ends, also on failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpuTicks, TICK_S, WRK_SECONDS } from './load';

const APP = `
const http = require('http'), http2 = require('http2');
http.createServer((req, res) => res.end('ok')).listen(18080, '127.0.0.1');
http2.createServer((req, res) => res.end('ok')).listen(18081, '127.0.0.1', () => console.log('listening'));`;

const PROXY = `
const http = require('http'), http2 = require('http2');
const agent = new http.Agent({ keepAlive: true });
http.createServer((req, res) => {
  const up = http.request({ agent, host: '127.0.0.1', port: 18080, method: req.method, path: req.url, headers: req.headers }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  req.pipe(up);
}).listen(18090, '127.0.0.1');
const h2 = http2.createServer();
h2.on('session', (s) => {
  const up = http2.connect('http://127.0.0.1:18081');
  s.on('close', () => up.close());
  s.on('stream', (stream, headers, flags) => {
    const h = { ...headers }; delete h[':scheme']; delete h[':authority'];
    const r = up.request(h, { endStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 });
    r.on('response', (rh) => { stream.respond(rh); r.pipe(stream); });
    r.on('error', () => stream.destroy());
    stream.pipe(r);
  });
});
h2.listen(18091, '127.0.0.1', () => console.log('listening'));`;

function start(script: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('a floor process did not start within 5 s')), 5000);
    child.stdout!.once('data', () => { clearTimeout(timer); resolve(child); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`a floor process exited (${code}) before listening`)); });
  });
}

function load(cmd: string, args: string[], pid: number): { rps: number; usPerReq: number } {
  const t0 = cpuTicks([pid]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: (WRK_SECONDS + 20) * 1000 });
  const ticks = cpuTicks([pid]) - t0;
  const requests = cmd === 'wrk' ? Number(/(\d+) requests in/.exec(r.stdout)?.[1]) : Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(r.stdout)?.[1]);
  const rps = cmd === 'wrk' ? Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]) : Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(r.stdout)?.[1]);
  if (!requests || !rps) throw new Error(`${cmd} gave no result (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return { rps, usPerReq: (ticks * TICK_S * 1e6) / requests };
}

/** serveHttp as the same bare HTTP/1 proxy (allow all, no log) on 18092, from this build. */
function weftProxy(): string {
  const serve = JSON.stringify(require.resolve('../../agent/http/serve'));
  const limits = JSON.stringify(require.resolve('../../agent/http/limits'));
  return `
const net = require('net');
const { serveHttp } = require(${serve});
const { DEFAULT_HTTP_LIMITS } = require(${limits});
const connectUpstream = () => new Promise((resolve, reject) => {
  const s = net.connect(18080, '127.0.0.1', () => { s.off('error', reject); s.setNoDelay(true); resolve(s); });
  s.once('error', reject);
});
net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
  sock.on('error', () => sock.destroy());
  void serveHttp(sock, { protocol: 'http1', decide: () => ({ allow: true }), connectUpstream, limits: DEFAULT_HTTP_LIMITS });
}).listen(18092, '127.0.0.1', () => console.log('listening'));`;
}

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  try {
    children.push(await start(APP));
    const proxy = await start(PROXY);
    children.push(proxy);
    const h1 = load('wrk', ['-t1', '-c16', `-d${WRK_SECONDS}s`, 'http://127.0.0.1:18090/'], proxy.pid!);
    const h2 = load('h2load', ['-t1', '-c16', '-m10', `-D${WRK_SECONDS}`, 'http://127.0.0.1:18091/'], proxy.pid!);
    proxy.kill('SIGKILL');
    const weft = await start(weftProxy());
    children.push(weft);
    const w1 = load('wrk', ['-t1', '-c16', `-d${WRK_SECONDS}s`, 'http://127.0.0.1:18092/'], weft.pid!);
    console.log('# a bare proxy on loopback (no TLS, tunnel, policy or log)');
    console.log(`HTTP/1.1 | Node http server + Agent | ${h1.rps.toFixed(0)} req/s | proxy CPU ${h1.usPerReq.toFixed(1)} us/req`);
    console.log(`HTTP/2   | Node http2 server + h2c session | ${h2.rps.toFixed(0)} req/s | proxy CPU ${h2.usPerReq.toFixed(1)} us/req`);
    console.log(`HTTP/1.1 | Weft serveHttp (llhttp direct) | ${w1.rps.toFixed(0)} req/s | proxy CPU ${w1.usPerReq.toFixed(1)} us/req`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
