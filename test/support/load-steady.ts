/**
 * A steady load run inside a client pod: for each target URL, one loop over a keep-alive
 * connection and one loop opening a new connection per request, each sequential with a short pause.
 * Every request is one JSON line on stdout: when it started and ended (wall clock, ms; the test
 * compares them with the agents' log times on the same machine), which loop, and how it ended.
 * Also a tiny HTTP server that logs each accepted connection's peer, so a test can tell whether a
 * client ever reached it without the proxy.
 */
import type { ChildProcess } from 'node:child_process';
import type { LabPod } from '../../agent/sandbox';

/** One request as the load generator saw it. */
export interface LoadSample {
  /** `<target index>:ka` (keep-alive) or `<target index>:new` (a new connection per request) */
  loop: string;
  start: number;
  end: number;
  ok: boolean;
  status: number;
  error?: string;
}

const LOAD = `
const http = require('http');
const [pauseMs, timeoutMs, ...urls] = process.argv.slice(1);
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
const once = (url, agent, loop) => new Promise((resolve) => {
  const start = Date.now();
  let done = false;
  const finish = (ok, status, error) => {
    if (done) return; done = true;
    process.stdout.write(JSON.stringify({ loop, start, end: Date.now(), ok, status, ...(error ? { error } : {}) }) + '\\n');
    resolve();
  };
  const req = http.get(url, { agent, timeout: Number(timeoutMs), headers: agent ? {} : { connection: 'close' } }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => body += d);
    res.on('end', () => finish(res.statusCode === 200 && body.startsWith('{'), res.statusCode));
    res.on('error', (e) => finish(false, res.statusCode, e.code || e.message));
  });
  req.on('timeout', () => req.destroy(new Error('ETIMEDOUT')));
  req.on('error', (e) => finish(false, 0, e.code || e.message));
});
const run = async (url, keepAlive, loop) => {
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  while (!stopping) {
    await once(url, agent, loop);
    await new Promise((r) => setTimeout(r, Number(pauseMs)));
  }
  if (agent) agent.destroy();
};
console.error('load running');
Promise.all(urls.flatMap((u, i) => [run(u, true, i + ':ka'), run(u, false, i + ':new')])).then(() => process.exit(0));`;

export interface LoadHandle {
  readonly process: ChildProcess;
  /** every request finished so far, in the order they finished */
  readonly samples: LoadSample[];
  /** resolves once the generator runs */
  readonly running: Promise<void>;
  /** stops the loops (each finishes its request in flight) and resolves with all samples */
  stop(): Promise<LoadSample[]>;
}

/**
 * Starts the load in `pod` against `urls` (two loops each). `pauseMs` between requests of a loop
 * bounds the rate while every request fails fast (refused); `timeoutMs` bounds each request.
 */
export function startSteadyLoad(pod: LabPod, urls: string[], opts: { pauseMs?: number; timeoutMs?: number } = {}): LoadHandle {
  const child = pod.spawn(process.execPath, ['-e', LOAD, String(opts.pauseMs ?? 20), String(opts.timeoutMs ?? 1000), ...urls]);
  const samples: LoadSample[] = [];
  let rest = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    rest += d;
    const lines = rest.split('\n');
    rest = lines.pop()!;
    for (const l of lines) if (l.trim()) samples.push(JSON.parse(l) as LoadSample);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const running = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`load generator in pod ${pod.name} did not start within 5 s: ${stderr}`)), 5_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('load running')) { clearTimeout(timer); resolve(); }
    });
    void exited.then(() => { clearTimeout(timer); reject(new Error(`load generator in pod ${pod.name} exited: ${stderr}`)); });
  });
  running.catch(() => undefined);
  return {
    process: child,
    samples,
    running,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
      return samples;
    },
  };
}

const PEER_LOG_SERVER = `
const [pod, port] = process.argv.slice(1);
const server = require('http').createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end(JSON.stringify({ pod, remoteAddress: req.socket.remoteAddress })));
});
server.on('connection', (s) => console.log('conn ' + s.remoteAddress.replace(/^::ffff:/, '')));
server.listen(Number(port), '0.0.0.0', () => console.log('listening ' + port));`;

export interface PeerLogServer {
  readonly process: ChildProcess;
  readonly ready: Promise<void>;
  /** the peer address of every connection the server accepted so far */
  peers(): string[];
  stop(): Promise<void>;
}

/** An HTTP server in `pod` that logs the peer address of every connection it accepts. */
export function startPeerLogServer(pod: LabPod, port: number): PeerLogServer {
  const child = pod.spawn(process.execPath, ['-e', PEER_LOG_SERVER, pod.name, String(port)]);
  const peers: string[] = [];
  let out = '';
  let ready!: () => void;
  const readyP = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server in pod ${pod.name} not listening on ${port} after 5 s`)), 5_000);
    ready = () => { clearTimeout(timer); resolve(); };
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server in pod ${pod.name} exited (${code})`)); });
  });
  readyP.catch(() => undefined);
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const lines = out.split('\n');
    out = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith('conn ')) peers.push(l.slice(5));
      else if (l.startsWith('listening')) ready();
    }
  });
  return {
    process: child,
    ready: readyP,
    peers: () => [...peers],
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    }),
  };
}
