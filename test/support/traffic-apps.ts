/**
 * Backends and a load client for the traffic-management tests, run inside lab pods as plain
 * `node -e` scripts. The backend's behaviour is set per request by its query string (status,
 * sleep, a share of 503s) or for the whole pod by a control file the test writes (an endpoint that
 * turns bad and good again); it reports every request it sees as a JSON line on stdout, so a test
 * counts what really reached the backend, not what the proxy says it sent.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import type { LabPod } from '../../agent/sandbox';

/**
 * argv: pod name, port, control file. Answers JSON {pod, path, status}. The query string sets the
 * answer: `status=N` answers N; `sleep=MS` waits first; `flaky=alternate` answers 503 to every
 * second request of that path (the first, third, ...), `flaky=P` answers 503 with probability P %.
 * A control file holding a status (e.g. `500`) overrides all of it for the pod while it exists.
 * Every request is written to stdout as {pod, path, status, t} on arrival (t: Date.now()), before any sleep.
 */
const BACKEND = String.raw`
const [pod, port, controlFile] = process.argv.slice(1);
const fs = require('fs');
const counters = new Map();
const forced = () => { try { const s = Number(fs.readFileSync(controlFile, 'utf8').trim()); return s >= 100 && s <= 599 ? s : undefined; } catch { return undefined; } };
require('http').createServer((req, res) => {
  const t = Date.now();
  const url = new URL(req.url, 'http://x');
  const q = url.searchParams;
  let status = Number(q.get('status') || 200);
  const flaky = q.get('flaky');
  if (flaky === 'alternate') {
    const n = counters.get(url.pathname) || 0;
    counters.set(url.pathname, n + 1);
    if (n % 2 === 0) status = 503;
  } else if (flaky !== null && Math.random() * 100 < Number(flaky)) status = 503;
  const f = forced();
  if (f !== undefined) status = f;
  req.resume();
  process.stdout.write(JSON.stringify({ pod, path: req.url, status, t }) + '\n');
  const answer = () => {
    const body = JSON.stringify({ pod, path: req.url, status });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const sleep = Number(q.get('sleep') || 0);
  req.on('end', () => (sleep > 0 ? setTimeout(answer, sleep) : answer()));
}).listen(Number(port), '::', () => console.log('listening ' + port));
`;

/**
 * argv: JSON {url, count, concurrency, keepAlive, timeoutMs}. Sends `count` GETs, at most
 * `concurrency` at once (keep-alive or a new connection each), and prints one JSON line:
 * {statuses: {code: n}, pods: {pod: n}, results: [{s, p, ms, t0, t1}]} in completion order, where
 * ms is the client-side elapsed time of that request (sent to end of body), t0/t1 Date.now().
 */
const LOAD_CLIENT = String.raw`
const http = require('http');
const o = JSON.parse(process.argv[1]);
const agent = new http.Agent({ keepAlive: o.keepAlive, maxSockets: o.concurrency });
const statuses = {}, pods = {}, results = [];
let sent = 0, done = 0;
const finish = (r) => {
  results.push(r);
  statuses[r.s] = (statuses[r.s] || 0) + 1;
  if (r.p) pods[r.p] = (pods[r.p] || 0) + 1;
  if (++done === o.count) { process.stdout.write(JSON.stringify({ statuses, pods, results }) + '\n'); process.exit(0); }
  else one();
};
const one = () => {
  if (sent >= o.count) return;
  sent++;
  const t0 = Date.now(), start = performance.now();
  const req = http.get(o.url, { agent, timeout: o.timeoutMs }, (res) => {
    let b = ''; res.setEncoding('utf8'); res.on('data', (d) => b += d);
    res.on('end', () => {
      let p; try { p = JSON.parse(b).pod; } catch {}
      finish({ s: res.statusCode, p, ms: performance.now() - start, t0, t1: Date.now() });
    });
    res.on('error', (e) => finish({ s: e.code || 'error', ms: performance.now() - start, t0, t1: Date.now() }));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
  req.on('error', (e) => finish({ s: e.code || 'error', ms: performance.now() - start, t0, t1: Date.now() }));
};
for (let i = 0; i < o.concurrency; i++) one();
`;

/** One request the backend answered. */
export interface BackendRequest {
  pod: string;
  path: string;
  status: number;
  /** Date.now() when it arrived */
  t: number;
}

export interface BackendHandle {
  readonly pod: string;
  /** every request answered so far, in order */
  readonly requests: BackendRequest[];
  /** requests whose path starts with `prefix` */
  seen(prefix: string): BackendRequest[];
  /** Makes the pod answer `status` to everything (undefined: back to the per-request behaviour). */
  force(status: number | undefined): void;
  readonly ready: Promise<void>;
}

/** The backend on `port` of `pod`; `controlFile` is where force() writes (a path the test owns). */
export function startBackend(pod: LabPod, port: number, controlFile: string): BackendHandle {
  rmSync(controlFile, { force: true });
  const child = pod.spawn(process.execPath, ['-e', BACKEND, pod.name, String(port), controlFile]);
  const requests: BackendRequest[] = [];
  let out = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backend in pod ${pod.name} not listening on ${port} after 5 s; stderr=${stderr}`)), 5_000);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`backend in pod ${pod.name} exited (${code}); stderr=${stderr}`)); });
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('listening')) { clearTimeout(timer); resolve(); continue; }
        if (l.trim()) requests.push(JSON.parse(l) as BackendRequest);
      }
    });
  });
  ready.catch(() => undefined);
  return {
    pod: pod.name,
    requests,
    seen: (prefix) => requests.filter((r) => r.path.startsWith(prefix)),
    force(status) {
      if (status === undefined) { if (existsSync(controlFile)) rmSync(controlFile); } else writeFileSync(controlFile, String(status));
    },
    ready,
  };
}

export interface LoadOptions {
  count: number;
  concurrency?: number;
  /** default true */
  keepAlive?: boolean;
  /** per request, client side; default 10 s */
  timeoutMs?: number;
}

export interface LoadResult {
  statuses: Record<string, number>;
  pods: Record<string, number>;
  results: Array<{ s: number | string; p?: string; ms: number; t0: number; t1: number }>;
}

/** Sends GETs to `url` from inside `pod` (the mesh captures them) and returns what came back. */
export async function load(pod: LabPod, url: string, opts: LoadOptions): Promise<LoadResult> {
  const o = { url, count: opts.count, concurrency: opts.concurrency ?? 1, keepAlive: opts.keepAlive ?? true, timeoutMs: opts.timeoutMs ?? 10_000 };
  const bound = Math.ceil(o.count / o.concurrency) * o.timeoutMs + 10_000;
  const r = await pod.exec(process.execPath, ['-e', LOAD_CLIENT, JSON.stringify(o)], { timeoutMs: Math.min(bound, 180_000) });
  assert.equal(r.code, 0, `load client in ${pod.name} for ${url}: exit ${r.code}\n${r.stderr}`);
  return JSON.parse(r.stdout) as LoadResult;
}

/** |observed share − expected| ≤ tolerance, with a message that shows the counts. */
export function assertShare(what: string, n: number, total: number, expected: number, tolerance: number): void {
  const share = n / total;
  assert.ok(Math.abs(share - expected) <= tolerance,
    `${what}: ${n} of ${total} (${(100 * share).toFixed(2)} %), expected ${(100 * expected).toFixed(1)} % ± ${(100 * tolerance).toFixed(1)} %`);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
