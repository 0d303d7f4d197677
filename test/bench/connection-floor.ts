/**
 * What an idle connection costs Node.js itself, below anything Weft adds (docs/memory.md): the
 * floor the agent's per-connection memory is judged against. On loopback, three processes:
 *   - a loader opening N connections and proving each with a one-byte echo;
 *   - the process measured, in one of two shapes:
 *       socket: each accepted socket echoes itself (one net.Socket per connection);
 *       stream: each accepted socket is piped both ways into an HTTP/2 CONNECT stream, streams
 *               multiplexed 1,000 to a session (one net.Socket + one Http2Stream per connection,
 *               what a Weft node proxy holds per tunnelled connection at either end);
 *   - an h2c server answering each stream with 200 and echoing it.
 * The measured process reads its own smaps_rollup and heap after a full GC before and after the
 * connections are held; per connection is the difference over N.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { createInterface } from 'node:readline';

const N = Number(process.env.WEFT_FLOOR_CONNECTIONS ?? 5_000);
const BATCH = 100;

const H2_SERVER = `
const http2 = require('http2');
const s = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
s.on('stream', (st) => { st.respond({ ':status': 200 }); st.pipe(st); st.on('error', () => {}); });
s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;

const MEASURED = `
const net = require('net'), http2 = require('http2'), fs = require('fs');
const [h2port, shape] = process.argv.slice(1);
const sessions = [];
const session = () => {
  let s = sessions.find((x) => x.active < 1000);
  if (!s) { s = { h: http2.connect('http://127.0.0.1:' + h2port), active: 0 }; s.h.on('error', () => {}); sessions.push(s); }
  s.active++;
  return s.h;
};
net.createServer((sock) => {
  sock.on('error', () => {});
  if (shape === 'socket') { sock.on('data', (d) => sock.write(d)); return; }
  const st = session().request({ ':method': 'CONNECT', ':authority': '10.0.0.1:9000' });
  st.on('error', () => sock.destroy());
  sock.pipe(st); st.pipe(sock);
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });
process.stdin.on('data', () => {
  gc(); gc();
  const r = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  const kb = (f) => Number(new RegExp('^' + f + ':\\\\s+(\\\\d+)', 'm').exec(r)[1]);
  console.log(JSON.stringify({ rss: kb('Rss') * 1024, heap: process.memoryUsage().heapUsed }));
});`;

function firstLine(p: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} printed nothing in 10 s`)), 10_000);
    createInterface({ input: p.stdout! }).once('line', (l) => { clearTimeout(t); resolve(l); });
    p.once('exit', (code) => { clearTimeout(t); reject(new Error(`${what} exited (${code})`)); });
  });
}

async function measure(shape: 'socket' | 'stream', flags: string[]): Promise<{ rss: number; heap: number }> {
  const h2 = spawn(process.execPath, ['-e', H2_SERVER]);
  const px = spawn(process.execPath, ['--expose-gc', ...flags, '-e', MEASURED, await firstLine(h2, 'h2c server'), shape]);
  const sockets: net.Socket[] = [];
  try {
    const port = Number(await firstLine(px, 'measured process'));
    const lines = createInterface({ input: px.stdout! });
    const reading = (): Promise<{ rss: number; heap: number }> => new Promise((resolve) => {
      lines.once('line', (l) => resolve(JSON.parse(l) as { rss: number; heap: number }));
      px.stdin!.write('\n');
    });
    await new Promise((r) => setTimeout(r, 500));
    const before = await reading();
    for (let i = 0; i < N; i += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, N - i) }, () => new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => s.write('x'));
        s.once('data', () => resolve());
        s.once('error', reject);
        sockets.push(s);
      })));
    }
    await new Promise((r) => setTimeout(r, 1_000));
    const after = await reading();
    return { rss: (after.rss - before.rss) / N, heap: (after.heap - before.heap) / N };
  } finally {
    for (const s of sockets) s.destroy();
    px.kill('SIGKILL');
    h2.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const flags = ['--max-semi-space-size=1'];
  console.log(`\n# Node.js floor per idle connection on loopback: ${N} connections each proven by a one-byte echo, ${flags.join(' ')}; bytes`);
  console.log(['shape'.padEnd(46), 'RSS per conn', 'of it JS heap'].join(' | '));
  for (const [shape, label] of [['socket', 'accepted net.Socket echoing itself'], ['stream', 'net.Socket piped into an HTTP/2 CONNECT stream']] as const) {
    const m = await measure(shape, flags);
    console.log([label.padEnd(46), m.rss.toFixed(0).padStart(12), m.heap.toFixed(0).padStart(13)].join(' | '));
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
