/**
 * Tail latency at a fixed offered rate (issue 11, point 2): vegeta sends keep-alive HTTP/1.1
 * requests from the client pod at the same rate to each contender, whatever the answers do, so a
 * stall shows in the latency of every request it delays (closed-loop wrk sends nothing while it
 * waits, and the stall hides: coordinated omission). The rate is a fraction of what the HAProxy
 * pair sustains closed-loop in the same run. Percentiles come from vegeta's per-request results.
 *
 * With a probe directory, the Weft agents are started with fixed-rate-probe.js preloaded, and the
 * slowest requests are lined up with the agents' GC pauses and event-loop stalls.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { BenchContext, Contender } from './hop-lab';
import { cpuTicks, TICK_S } from './load';
import { correlate, parseProbe, parseVegetaJson, summarize, type Correlation, type LatencySummary, type Pause } from './fixed-rate-stats';

export const VEGETA_VERSION = 'v12.13.0';
const TOOLS_ROOT = process.env.WEFT_TEST_TOOLS ?? '/var/cache/weft-test-tools';
const LOAD_TOOLS = join(__dirname, '..', '..', '..', 'scripts', 'load-tools.sh');
const WARM_UP_S = 1;
const MIN_DURATION_S = 3;
/**
 * Connections vegeta may hold, as wrk's -c16. Unbounded (its default), a stall makes it open a new
 * connection for every request sent meanwhile: each is a new TLS session through a TCP-mode HAProxy
 * pair, the handshakes take the CPU, latency grows and it opens more (first run: HAProxy and Weft
 * achieved 600-800 of 6,000 req/s with p50 in the hundreds of ms). A request waiting for a free
 * connection still counts its wait: vegeta's clock starts before it asks for one.
 */
const CONNECTIONS = 16;

export interface FixedRateOptions {
  /** offered rates as fractions of the HAProxy pair's closed-loop keep-alive req/s */
  fractions: number[];
  /** requests per contender and rate (the duration follows from the rate) */
  minRequests: number;
  /** longest run per contender and rate, s (caps the duration at low rates) */
  maxDurationS: number;
  /** set: preload the probe into Weft's agents and correlate, writing its files here */
  probeDir?: string;
}

/**
 * 25 % and 10 %: at 50 % (9,500 req/s in one run) even the direct path answered with p50 126 ms on
 * this 2-vCPU machine: vegeta (Go net/http) takes more CPU per request than wrk, and the client,
 * the server and the proxies share the two cores. A rate the direct path cannot carry measures the
 * queue, not the proxy.
 */
export const DEFAULT_FIXED_RATE: FixedRateOptions = { fractions: [0.25, 0.1], minRequests: 12_000, maxDurationS: 10 };

export interface FixedRateRow extends LatencySummary {
  name: string; fraction: number; offeredRps: number; durationS: number; load1: number;
  /** the contender's proxies' CPU over the run, in % of one core (0 for direct), and per request, us */
  proxyCpuPct: number; proxyCpuUsPerReq: number;
  correlation?: Correlation;
}

/** The vegeta binary: $WEFT_VEGETA, the setup's cache, or built now by scripts/load-tools.sh. */
export function vegetaBinary(): string {
  if (process.env.WEFT_VEGETA) return process.env.WEFT_VEGETA;
  const cached = join(TOOLS_ROOT, `vegeta-${VEGETA_VERSION}`, 'vegeta');
  if (existsSync(cached)) return cached;
  const r = spawnSync('bash', [LOAD_TOOLS], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  const path = r.stdout?.trim().split('\n').pop();
  if (r.status !== 0 || !path || !existsSync(path)) throw new Error(`vegeta not found in ${cached} and ${LOAD_TOOLS} could not build it (exit ${r.status}); run \`bash scripts/setup.sh\``);
  return path;
}

/** Duration that gives `minRequests` at `rate`, at least MIN_DURATION_S and at most `maxS`. */
export function durationFor(rate: number, minRequests: number, maxS: number): number {
  return Math.min(maxS, Math.max(MIN_DURATION_S, Math.ceil(minRequests / rate)));
}

/** One vegeta attack from the client pod; the per-request results, parsed. */
async function attack(c: BenchContext, vegeta: string, url: string, rate: number, durationS: number, tag: string): Promise<ReturnType<typeof parseVegetaJson>> {
  const bin = join(c.dir, `vegeta-${tag}.bin`);
  const json = join(c.dir, `vegeta-${tag}.json`);
  try {
    const r = await c.client.exec(vegeta, ['attack', `-rate=${rate}/1s`, `-duration=${durationS}s`, '-keepalive=true', '-http2=false', `-max-connections=${CONNECTIONS}`, `-connections=${CONNECTIONS}`, '-timeout=10s', `-output=${bin}`],
      { input: `GET ${url}\n`, timeoutMs: (durationS + 30) * 1000 });
    if (r.code !== 0) throw new Error(`vegeta attack ${url} at ${rate}/s exited ${r.code}: ${r.stderr.slice(-1000)}`);
    execFileSync(vegeta, ['encode', '-to', 'json', `-output=${json}`, bin], { stdio: 'pipe', timeout: 60_000 });
    return parseVegetaJson(readFileSync(json, 'utf8'));
  } finally {
    rmSync(bin, { force: true });
    rmSync(json, { force: true });
  }
}

function readProbes(dir: string, fromMs: number, toMs: number): Pause[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.startsWith('probe-')).flatMap((f) => parseProbe(readFileSync(join(dir, f), 'utf8'), join(dir, f)))
    .filter((p) => p.endMs >= fromMs && p.startMs <= toMs);
}

/** Starts each contender once, runs every rate against it (after a warm-up at that rate), stops it. */
export async function fixedRatePhase(c: BenchContext, contenders: Contender[], haproxyRps: number, opts: FixedRateOptions = DEFAULT_FIXED_RATE): Promise<FixedRateRow[]> {
  if (!(haproxyRps > 0)) throw new Error(`fixed-rate phase: the HAProxy pair's closed-loop rate must be > 0 req/s, got ${haproxyRps}`);
  const vegeta = vegetaBinary();
  const rows: FixedRateRow[] = [];
  for (const contender of contenders) {
    const probing = opts.probeDir !== undefined && contender.name === 'Weft';
    const savedFlags = process.env.WEFT_BENCH_AGENT_FLAGS;
    if (probing) {
      process.env.WEFT_BENCH_AGENT_FLAGS = `${savedFlags ?? ''} --require ${join(__dirname, 'fixed-rate-probe.js')}`.trim();
      process.env.WEFT_TAIL_PROBE_DIR = opts.probeDir;
    }
    let ep;
    try {
      ep = await contender.start(c);
    } finally {
      if (probing) {
        if (savedFlags === undefined) delete process.env.WEFT_BENCH_AGENT_FLAGS; else process.env.WEFT_BENCH_AGENT_FLAGS = savedFlags;
        delete process.env.WEFT_TAIL_PROBE_DIR;
      }
    }
    try {
      const url = `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}/`;
      for (const fraction of opts.fractions) {
        const rate = Math.max(1, Math.round(haproxyRps * fraction));
        const durationS = durationFor(rate, opts.minRequests, opts.maxDurationS);
        await attack(c, vegeta, url, rate, WARM_UP_S, 'warm');
        const t0 = cpuTicks(ep.pids());
        const samples = await attack(c, vegeta, url, rate, durationS, 'run');
        const cpuS = (cpuTicks(ep.pids()) - t0) * TICK_S;
        const summary = summarize(samples);
        const row: FixedRateRow = { name: contender.name, fraction, offeredRps: rate, durationS, load1: loadavg()[0]!, ...summary,
          proxyCpuPct: (100 * cpuS) / durationS, proxyCpuUsPerReq: samples.length ? (cpuS * 1e6) / samples.length : 0 };
        if (probing && samples.length) {
          const from = Math.min(...samples.map((s) => s.startMs));
          const to = Math.max(...samples.map((s) => s.startMs + s.latencyMs));
          row.correlation = correlate(samples, readProbes(opts.probeDir!, from, to));
        }
        rows.push(row);
      }
    } finally {
      await ep.stop();
    }
  }
  return rows;
}

const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : 'n/a');

/** The table: per rate, each contender's p50/p99/p99.9/max, then Weft's p99 and p99.9 against HAProxy's. */
export function printFixedRate(rows: FixedRateRow[], haproxyRps: number): void {
  const fractions = [...new Set(rows.map((r) => r.fraction))];
  console.log(`\n# Fixed rate (vegeta ${VEGETA_VERSION}, keep-alive HTTP/1.1, client pod on n1 to server pod on n2), rates as a share of the HAProxy pair's closed-loop ${haproxyRps.toFixed(0)} req/s in this run`);
  for (const fraction of fractions) {
    const at = rows.filter((r) => r.fraction === fraction);
    console.log(`\n## ${(fraction * 100).toFixed(0)} %: ${at[0]!.offeredRps} req/s offered for ${at[0]!.durationS} s`);
    console.log(['contender'.padEnd(14), 'achieved req/s', 'requests', 'failed', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'proxy CPU % / us per req', 'load1'].join(' | '));
    for (const r of at) {
      console.log([r.name.padEnd(14), r.achievedRps.toFixed(0), String(r.requests), String(r.failed), f3(r.p50), f3(r.p99), f3(r.p999), f3(r.max),
        `${r.proxyCpuPct.toFixed(0)} / ${r.proxyCpuUsPerReq.toFixed(0)}`, r.load1.toFixed(1)].join(' | '));
    }
    const ha = at.find((r) => r.name === 'HAProxy pair');
    const weft = at.find((r) => r.name === 'Weft');
    if (ha && weft) console.log(`Weft / HAProxy pair: p99 ${(weft.p99 / ha.p99).toFixed(2)}x, p99.9 ${(weft.p999 / ha.p999).toFixed(2)}x (target <= 1.00x)`);
    for (const r of at.filter((x) => x.correlation)) {
      const k = r.correlation!;
      console.log(`${r.name} agents' pauses vs its slowest ${k.slowest} requests (>= ${f3(k.thresholdMs)} ms): kind | pauses | total ms | max ms | share of slowest overlapping | by chance (same-length windows) | share of all requests`);
      for (const b of k.byKind) console.log(`  ${b.kind.padEnd(14)} | ${b.pauses} | ${b.totalMs.toFixed(1)} | ${b.maxMs.toFixed(2)} | ${(b.slowShare * 100).toFixed(0)} % | ${(b.chanceShare * 100).toFixed(0)} % | ${(b.allShare * 100).toFixed(1)} %`);
    }
  }
}
