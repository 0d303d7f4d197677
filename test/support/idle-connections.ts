/**
 * Many idle TCP connections through the mesh, and what they cost the processes that carry them.
 *
 * An echo server (one process in the destination pod) and holders (one process per client pod):
 * a holder opens its share of the connections with a bounded number of connects in flight, proves
 * each one works end to end (it writes one byte and waits for the same byte back; one refused while
 * being set up, as a proxy shedding load refuses, is tried again a few times), then keeps them
 * all open and idle until told to check them again (`ping`: one more byte each way on every
 * connection) or to stop. The per-process open-files limit here is 20,000, so the connections are
 * spread over several holders and a test keeps each process (holders, server, each agent) below it.
 *
 * Memory is read from /proc: VmRSS, and smaps_rollup's split into anonymous memory (heap, malloc,
 * buffers) and file-backed pages (code, mapped files).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { LabPod } from '../../agent/sandbox';

/** Echo server for the idle connections: one process, every byte back. Prints `listening` once it listens. */
export const IDLE_ECHO_SERVER = `
const port = Number(process.argv[1]);
let open = 0;
const srv = require('net').createServer((s) => {
  open++;
  s.on('data', (d) => s.write(d));
  s.on('error', () => {});
  s.on('close', () => { open--; });
});
srv.maxConnections = 19000;
srv.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => console.log('listening ' + port));
process.on('SIGUSR2', () => console.log(JSON.stringify({ open })));`;

/**
 * The holder: argv host port count inflight phaseTimeoutMs. Prints one JSON line when every
 * connection is settled (`{"phase":"held","ok":N,"failed":M,"errors":{code:count}}`), and one per
 * `ping` line on stdin (`{"phase":"ping","ok":N,"failed":M,...}`). Exits on SIGTERM or when stdin ends.
 */
const HOLDER = `
const net = require('net');
const [host, portArg, countArg, inflightArg, phaseArg] = process.argv.slice(1);
const port = Number(portArg), count = Number(countArg), inflight = Number(inflightArg), phaseMs = Number(phaseArg);
const socks = [];
const errors = {};
const bump = (e) => { const k = (e && (e.code || e.message)) || 'closed'; errors[k] = (errors[k] || 0) + 1; };
// One byte out, the same byte back, within the phase deadline; resolves true or false.
const roundTrip = (s, byte, deadline) => new Promise((resolve) => {
  if (s.destroyed) return resolve(false);
  let done = false;
  const finish = (ok, why) => { if (done) return; done = true; clearTimeout(t); s.off('data', onData); s.off('close', onClose); if (!ok) bump(why); resolve(ok); };
  const onData = (d) => finish(d.length === 1 && d[0] === byte, { code: d[0] === byte ? 'extra bytes' : 'wrong byte' });
  const onClose = () => finish(false, s.__err || { code: 'closed' });
  const t = setTimeout(() => finish(false, { code: 'no echo in time' }), Math.max(1, deadline - Date.now()));
  s.on('data', onData);
  s.once('close', onClose);
  s.write(Buffer.of(byte));
});
const openOne = (deadline) => new Promise((resolve) => {
  let settled = false;
  const s = net.connect({ host, port });
  const fail = (why) => { if (settled) return; settled = true; clearTimeout(t); bump(why); s.destroy(); resolve(false); };
  const t = setTimeout(() => fail({ code: 'connect timeout' }), Math.max(1, deadline - Date.now()));
  s.on('error', (e) => { s.__err = e; fail(e); });
  s.once('connect', () => {
    if (settled) return;
    settled = true;
    clearTimeout(t);
    s.setNoDelay(true);
    roundTrip(s, 1, deadline).then((ok) => { if (ok) socks.push(s); else s.destroy(); resolve(ok); });
  });
});
const report = (phase, ok, failed, extra) => process.stdout.write(JSON.stringify({ phase, ok, failed, errors, ...extra }) + '\\n');
// A connection refused while being set up (a proxy shedding load or at a per-pod limit resets it)
// is tried again after a pause, as a client would, up to RETRIES times; the report counts the retries
// (errors counts every failed attempt, retried ones included).
const RETRIES = 10;
let retries = 0;
(async () => {
  const deadline = Date.now() + phaseMs;
  let next = 0, ok = 0, failed = 0;
  const one = async () => {
    for (let attempt = 0; ; attempt++) {
      if (await openOne(deadline)) return true;
      if (attempt >= RETRIES || Date.now() >= deadline) return false;
      retries++;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
  };
  const worker = async () => { while (next < count) { next++; if (await one()) ok++; else failed++; } };
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, worker));
  report('held', ok, failed, { retries });
  const rl = require('readline').createInterface({ input: process.stdin });
  rl.on('line', async (l) => {
    if (l.trim() !== 'ping') return;
    for (const k of Object.keys(errors)) delete errors[k];
    const d = Date.now() + phaseMs;
    const results = await Promise.all(socks.map((s) => roundTrip(s, 2, d)));
    const good = results.filter(Boolean).length;
    report('ping', good, results.length - good);
  });
  rl.on('close', () => process.exit(0));
})();
process.on('SIGTERM', () => { for (const s of socks) s.destroy(); process.exit(0); });`;

/** What a holder says after a phase: connections that passed the one-byte round trip, those that did not, and why. */
export interface HolderReport { phase: 'held' | 'ping'; ok: number; failed: number; errors: Record<string, number>; /** connections refused while set up and tried again (held only) */ retries?: number }

export interface IdleHolder {
  readonly pod: LabPod;
  readonly process: ChildProcess;
  /** resolves once every connection was tried (bounded by the phase timeout); rejects if the holder dies */
  readonly held: Promise<HolderReport>;
  /** one more byte each way on every held connection */
  ping(): Promise<HolderReport>;
  /** closes its connections and exits */
  stop(): Promise<void>;
}

export interface HoldOptions {
  /** connects in flight at once per holder; default 64 */
  inflight?: number;
  /** how long a phase (open all, or ping all) may take; default 120 s */
  phaseTimeoutMs?: number;
}

/** Opens `count` connections from `pod` to host:port, each proven with a one-byte echo, and holds them. */
export function holdIdleConnections(pod: LabPod, host: string, port: number, count: number, opts: HoldOptions = {}): IdleHolder {
  const phaseMs = opts.phaseTimeoutMs ?? 120_000;
  const child = pod.spawn(process.execPath, ['-e', HOLDER, host, String(port), String(count), String(opts.inflight ?? 64), String(phaseMs)]);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const waiting: Array<{ resolve(r: HolderReport): void; reject(e: Error): void }> = [];
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    let r: HolderReport;
    try { r = JSON.parse(l) as HolderReport; } catch { return; }
    waiting.shift()?.resolve(r);
  });
  const next = (what: string): Promise<HolderReport> => new Promise((resolve, reject) => {
    // bounded: the holder's own phase deadline, plus slack for a holder that hangs
    const timer = setTimeout(() => reject(new Error(`holder in pod ${pod.name}: no ${what} report after ${phaseMs + 30_000} ms; stderr=${stderr.slice(-500)}`)), phaseMs + 30_000);
    waiting.push({ resolve: (r) => { clearTimeout(timer); resolve(r); }, reject: (e) => { clearTimeout(timer); reject(e); } });
  });
  void exited.then(() => { for (const w of waiting.splice(0)) w.reject(new Error(`holder in pod ${pod.name} exited (${child.exitCode ?? child.signalCode}): ${stderr.slice(-500)}`)); });
  const held = next('held');
  held.catch(() => undefined);
  return {
    pod,
    process: child,
    held,
    ping() {
      const r = next('ping');
      child.stdin!.write('ping\n');
      return r;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A process's memory from /proc, MiB: resident, of which anonymous (heap, malloc, buffers) and file-backed (code, mapped files). */
export interface ProcessMemory { rss: number; anon: number; file: number }

export function processMemory(pid: number): ProcessMemory {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN);
  const rss = kb('Rss');
  const anon = kb('Anonymous');
  return { rss: rss / 1024, anon: anon / 1024, file: (rss - anon) / 1024 };
}

export const formatMemory = (m: ProcessMemory): string => `${m.rss.toFixed(1)} MiB RSS (${m.anon.toFixed(1)} anonymous, ${m.file.toFixed(1)} file-backed)`;

/** How many of `total` connections go to each of `holders` holders, as even as possible. */
export function shares(total: number, holders: number): number[] {
  return Array.from({ length: holders }, (_, i) => Math.floor(total / holders) + (i < total % holders ? 1 : 0));
}
