/**
 * What the pod-to-pod benchmarks share: the HTTP server they load (a 'bulk?bytes=N' body or a
 * short 'ok'), wrk and h2load with their latency percentiles, and a process's CPU and RSS from /proc.
 */
import { readFileSync, rmSync } from 'node:fs';
import type { LabPod } from '../../agent/sandbox';

export const HTTP_SERVER = `
const http = require('http');
const chunk = Buffer.alloc(256 * 1024, 7);
http.createServer((req, res) => {
  const m = /bytes=(\\d+)/.exec(req.url);
  if (!m) { res.end('ok'); return; }
  let left = Number(m[1]);
  res.writeHead(200, { 'content-length': left });
  const pump = () => { while (left > 0) { const c = left >= chunk.length ? chunk : chunk.subarray(0, left); left -= c.length; if (!res.write(c)) return res.once('drain', pump); } res.end(); };
  pump();
}).listen(8080, '0.0.0.0', () => console.log('listening'));`;

export const BULK_BYTES = 1024 * 1024 * 1024;
export const WRK_SECONDS = 5;
/** /proc/<pid>/stat counts CPU in clock ticks of 10 ms (USER_HZ 100). */
export const TICK_S = 0.01;

/** User plus system CPU of these processes, in clock ticks. */
export function cpuTicks(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return sum + Number(f[11]) + Number(f[12]);
  }, 0);
}

/** Summed resident set of these processes, MiB. */
export const rssMiB = (pids: number[]): number =>
  pids.reduce((s, pid) => s + Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0), 0) / 1024;

const ms = (v: string, unit: string) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);

/** What one load run measured. `failed` counts requests without a 2xx/3xx answer and socket errors. */
export interface LoadResult { rps: number; p50: number; p99: number; requests: number; failed: number }

/** wrk -t1 -c16 for `seconds` (WRK_SECONDS) from `client`: req/s, p50/p99 in ms, the request count and the failures. */
export async function wrk(client: LabPod, url: string, extra: string[], seconds = WRK_SECONDS): Promise<LoadResult> {
  const r = await client.exec('wrk', ['-t1', '-c16', `-d${seconds}s`, '--latency', ...extra, url], { timeoutMs: (seconds + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1]);
  const lat = (p: string) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(r.stdout); return m ? ms(m[1]!, m[2]!) : NaN; };
  if (!rps) throw new Error(`wrk gave no result for ${url}:\n${r.stdout}\n${r.stderr}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const failed = non2xx + (sock ? sock.slice(1).reduce((s, v) => s + Number(v), 0) : 0);
  return { rps, p50: lat('50'), p99: lat('99'), requests, failed };
}

/**
 * h2load over HTTP/2 (h2c with prior knowledge for an http:// URL): `connections` connections with
 * `streams` concurrent streams each, for WRK_SECONDS from `client`. h2load prints no percentiles,
 * so p50/p99 come from its per-request log (start µs, status, elapsed µs), written to `logPath`
 * (a path the client's mount namespace shares with this process) and removed afterwards.
 */
export async function h2load(client: LabPod, url: string, logPath: string, connections = 16, streams = 10): Promise<LoadResult> {
  try {
    const r = await client.exec('h2load', ['-t1', `-c${connections}`, `-m${streams}`, `-D${WRK_SECONDS}`, `--log-file=${logPath}`, url],
      { timeoutMs: (WRK_SECONDS + 20) * 1000 });
    const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(r.stdout)?.[1]);
    const counts = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(r.stdout);
    if (!rps || !counts) throw new Error(`h2load gave no result for ${url} (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    const [requests, succeeded] = [Number(counts[1]), Number(counts[2])];
    const times = readFileSync(logPath, 'utf8').split('\n').flatMap((l) => {
      const f = l.split('\t');
      return f.length === 3 && f[1]!.startsWith('2') ? [Number(f[2]) / 1000] : [];
    }).sort((a, b) => a - b);
    const pct = (p: number) => (times.length ? times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]! : NaN);
    return { rps, p50: pct(50), p99: pct(99), requests, failed: requests - succeeded };
  } finally {
    rmSync(logPath, { force: true });
  }
}
