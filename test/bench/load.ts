/**
 * What the pod-to-pod benchmarks share: the HTTP server they load (a 'bulk?bytes=N' body or a
 * short 'ok'), wrk with its latency percentiles, and a process's CPU and RSS from /proc.
 */
import { readFileSync } from 'node:fs';
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

/** wrk -t1 -c16 for WRK_SECONDS from `client`: req/s, p50/p99 in ms, and the request count. */
export async function wrk(client: LabPod, url: string, extra: string[]): Promise<{ rps: number; p50: number; p99: number; requests: number }> {
  const r = await client.exec('wrk', ['-t1', '-c16', `-d${WRK_SECONDS}s`, '--latency', ...extra, url], { timeoutMs: (WRK_SECONDS + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1]);
  const lat = (p: string) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(r.stdout); return m ? ms(m[1]!, m[2]!) : NaN; };
  if (!rps) throw new Error(`wrk gave no result for ${url}:\n${r.stdout}\n${r.stderr}`);
  return { rps, p50: lat('50'), p99: lat('99'), requests };
}
