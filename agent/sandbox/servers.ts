// Tiny servers and clients that run inside pods with nothing but node (and curl for HTTP).
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import type { LabPod } from './lab';
import type { ExecResult } from './run';

const READY_TIMEOUT_MS = 5_000;

// Dual-stack listeners see v4 peers as ::ffff:a.b.c.d; the servers report the plain address.
const PLAIN = `const plain = (a) => a.replace(/^::ffff:/, '');`;

const ECHO = `${PLAIN}
const [pod, port, host] = process.argv.slice(1);
require('net').createServer((s) => {
  s.write('echo ' + pod + ' peer=' + plain(s.remoteAddress) + ':' + s.remotePort + '\\n');
  s.pipe(s);
  s.on('error', () => {});
}).listen(Number(port), host, () => console.log('listening ' + port));`;

const HTTP = `${PLAIN}
const [pod, port] = process.argv.slice(1);
require('http').createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    const { method, url, headers } = req;
    res.end(JSON.stringify({ pod, remoteAddress: plain(req.socket.remoteAddress), method, url, headers }));
  });
}).listen(Number(port), '::', () => console.log('listening ' + port));`;

const CONNECT = `
const [host, port, payload] = process.argv.slice(1);
const s = require('net').connect(Number(port), host, () => s.end(payload));
s.pipe(process.stdout);
s.on('error', (e) => { console.error(e.code || e.message); process.exitCode = 1; });`;

export interface ServerHandle {
  readonly process: ChildProcess;
  /** resolves once the server printed its listen line; rejects (bounded) otherwise */
  readonly ready: Promise<void>;
  stop(): Promise<void>;
}

function serve(pod: LabPod, script: string, args: string[]): ServerHandle {
  const child = pod.spawn(process.execPath, ['-e', script, ...args]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const ready = new Promise<void>((resolve, reject) => {
    const fail = (why: string): void => reject(new Error(`server in pod ${pod.name} (${args.join(' ')}): ${why}; stderr=${JSON.stringify(stderr)}`));
    const timer = setTimeout(() => fail(`not listening after ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (!d.includes('listening')) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(`exited (${code ?? signal})`);
    });
  });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  ready.catch(() => undefined); // observed through the handle; avoid an unhandled rejection when nobody awaits it
  return { process: child, ready, stop };
}

/** TCP echo server; on accept it first writes `echo <pod> peer=<addr>:<port>\n`, then echoes. */
export function startEchoServer(pod: LabPod, port: number, opts: { family?: 4 | 6 } = {}): ServerHandle {
  return serve(pod, ECHO, [pod.name, String(port), opts.family === 6 ? '::' : '0.0.0.0']);
}

/** HTTP server (v4 and v6) answering every request with JSON { pod, remoteAddress, method, url, headers }. */
export function startHttpServer(pod: LabPod, port: number): ServerHandle {
  return serve(pod, HTTP, [pod.name, String(port)]);
}

/** Connects from `pod`, sends `payload`, half-closes and returns what came back before the peer closed. */
export function tcpRequest(pod: LabPod, host: string, port: number, opts: { payload?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  return pod.exec(process.execPath, ['-e', CONNECT, host, String(port), opts.payload ?? ''], { timeoutMs: opts.timeoutMs ?? 5_000 });
}

export interface CurlResult {
  /** curl's exit code (0 ok, 7 refused, 28 timeout, 56 reset, ...) */
  code: number | null;
  /** HTTP status, 0 when no response */
  status: number;
  body: string;
  stderr: string;
}

let curlChecked = false;

/** curl from inside `pod`; extra args (e.g. ['-H', 'x: y']) go before the URL. */
export async function curl(pod: LabPod, url: string, opts: { timeoutMs?: number; args?: string[] } = {}): Promise<CurlResult> {
  if (!curlChecked) {
    if (spawnSync('curl', ['--version']).status !== 0) throw new Error('curl is not installed (apt-get install curl): the lab uses it as HTTP client');
    curlChecked = true;
  }
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const args = ['-sS', '-g', '--max-time', String(timeoutMs / 1000), '-w', '\n%{http_code}', ...(opts.args ?? []), url];
  const r = await pod.exec('curl', args, { timeoutMs: timeoutMs + 2_000 });
  const cut = r.stdout.lastIndexOf('\n');
  return { code: r.code, status: Number(r.stdout.slice(cut + 1)) || 0, body: r.stdout.slice(0, Math.max(cut, 0)), stderr: r.stderr };
}
