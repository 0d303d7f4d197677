/**
 * The cost of one new connection through the Weft node proxies (issue 11 point 1,
 * docs/new-connections.md): client pod on n1, server pod on n2, `wrk -H 'Connection: close'`
 * (one TCP connection per request) for WRK_SECONDS, WEFT_NC_ROUNDS times (default 3). For each
 * round: req/s, and each agent's user+system CPU per connection from /proc/<pid>/stat (steadier
 * than req/s on a shared host). WEFT_NC_HAPROXY=1 runs the HAProxy pair the same way first, for
 * the ratio. WEFT_BENCH_AGENT_FLAGS='--cpu-prof --cpu-prof-dir=DIR' profiles the agents.
 * WEFT_BENCH_LAB names the lab (default wnc1). WEFT_NC_DIRECT=1 runs the client against the server
 * pod without any proxy first: the host's own cost of a connection, the floor under every contender.
 *
 * Each round also prints each process's CPU split into user and kernel time, and the whole host's
 * busy CPU per connection (/proc/stat: the load generator, the server, softirqs and the proxies):
 * on this 2-vCPU host a rate R needs at most 2 s / R of host CPU per connection, so the direct row's
 * host cost plus the proxies' kernel time bounds what any user-space work could reach.
 *
 * The warm-up and each round connect from a client pod of their own (same namespace): a client that
 * closes first keeps each connection's port in TIME_WAIT for 60 s, so a round run from the client of
 * the round before measured that client's search for a free port, not the proxies (rounds after the
 * first fell to 430-490 connections/s for Weft, docs/new-connections.md). WEFT_NC_ONE_CLIENT=1 runs
 * every round from the warm-up's client instead, as one busy pod would: direct and the HAProxy pair
 * then fall once a range of source ports per destination is in TIME_WAIT, Weft (with its 16 capture
 * ports, docs/capture-ports.md) later.
 */

import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { cpuTicks, HTTP_SERVER, TICK_S, WRK_SECONDS, wrk } from './load';
import { withHopLab } from './hop-lab';
import { readFileSync } from 'node:fs';
import { direct, haproxyPair, weft } from './mtls-hop';

const IDLE_MS = 5_000;
const ROUNDS = Math.max(1, Math.min(20, Number(process.env.WEFT_NC_ROUNDS ?? 3)));
const ONE_CLIENT = process.env.WEFT_NC_ONE_CLIENT === '1';

interface Round { rps: number; requests: number; failed: number; usPerConn: number[]; netUsPerConn: number[]; sysUsPerConn: number[]; hostUsPerConn: number; load: number }

/** A process's kernel-mode CPU ticks (stime). */
const sysTicks = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[12]);
/** The host's busy CPU ticks, all CPUs: everything but idle and iowait. */
function hostBusyTicks(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - f[4]!;
}

function rounds(name: string, rs: Round[], labels: string[]): void {
  for (const [i, r] of rs.entries()) {
    const per = r.usPerConn.map((u, j) => `${labels[j] ?? `p${j}`} ${u.toFixed(1)} (kernel ${r.sysUsPerConn[j]!.toFixed(1)})`).join(', ');
    const sum = (v: number[]) => v.reduce((a, b) => a + b, 0).toFixed(1);
    console.log(`${name.padEnd(13)} round ${i + 1}: ${r.rps.toFixed(0)} conn/s (${r.requests} conns, ${r.failed} failed), CPU µs/conn: ${per}, sum ${sum(r.usPerConn)}`
      + ` (less idle: ${sum(r.netUsPerConn)}); host ${r.hostUsPerConn.toFixed(1)} µs/conn; load ${r.load.toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  await withHopLab({ name: process.env.WEFT_BENCH_LAB ?? 'wnc1', client: { namespace: 'bench' }, server: { namespace: 'bench' }, serverScript: HTTP_SERVER }, async (c) => {
    const contenders = [...(process.env.WEFT_NC_DIRECT === '1' ? [direct] : []), ...(process.env.WEFT_NC_HAPROXY === '1' ? [haproxyPair] : []), weft];
    // Made before the mesh starts, which enrolls the pods the lab has then; a set per contender, so no
    // contender meets another's TIME_WAIT sockets (direct and Weft connect to the same address).
    const clientsOf = [];
    for (const [k] of contenders.entries()) {
      const set = [];
      for (let i = 0; i < ROUNDS; i++) set.push(ONE_CLIENT ? c.client : await c.n1.pod(`client-${k}r${i + 1}`, { namespace: 'bench' }));
      clientsOf.push(set);
    }
    for (const [k, contender] of contenders.entries()) {
      const roundClients = clientsOf[k]!;
      const ep = await contender.start(c);
      try {
        const url = `http://${ep.host}:${ep.port}/`;
        await wrk(c.client, url, ['-H', 'Connection: close']); // warm-up (JIT, pools)
        // What the processes burn with no traffic (timers, discovery, GC of what the warm-up left), per second:
        // subtracted from each round ("less idle"), since at a few hundred connections a second it is a large share.
        const idlePids = ep.pids();
        const i0 = idlePids.map((p) => cpuTicks([p]));
        const idleStart = performance.now();
        await new Promise((r) => setTimeout(r, IDLE_MS));
        const idleUsPerS = idlePids.map((p, j) => ((cpuTicks([p]) - i0[j]!) * TICK_S * 1e6) / ((performance.now() - idleStart) / 1000));
        console.log(`${contender.name.padEnd(13)} idle: CPU ${idleUsPerS.map((u) => (u / 1000).toFixed(1)).join(' + ')} ms/s`);
        const rs: Round[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const pids = ep.pids();
          const t0 = pids.map((p) => cpuTicks([p]));
          const s0 = pids.map(sysTicks);
          const h0 = hostBusyTicks();
          // WEFT_NC_PERF=DIR: the kernel side too, perf record -g of each agent during the first round
          const perfDir = process.env.WEFT_NC_PERF;
          const perfs = perfDir && i === 0 ? pids.map((p, j) => spawn('perf', ['record', '-q', '-F', '499', '-g', '-p', String(p), '-o', `${perfDir}/perf-${j}.data`, '--', 'sleep', String(WRK_SECONDS)], { stdio: 'ignore' })) : [];
          const began = performance.now();
          const r = await wrk(roundClients[i]!, url, ['-H', 'Connection: close']);
          const dt = pids.map((p, j) => cpuTicks([p]) - t0[j]!);
          const ds = pids.map((p, j) => sysTicks(p) - s0[j]!);
          const dh = hostBusyTicks() - h0;
          await Promise.all(perfs.map((p) => new Promise((res) => { if (p.exitCode !== null) res(null); else { p.once('exit', res); setTimeout(() => { p.kill('SIGINT'); }, 10_000).unref(); } })));
          const seconds = (performance.now() - began) / 1000;
          rs.push({ rps: r.rps, requests: r.requests, failed: r.failed, usPerConn: dt.map((t) => (t * TICK_S * 1e6) / r.requests),
            netUsPerConn: dt.map((t, j) => (t * TICK_S * 1e6 - idleUsPerS[j]! * seconds) / r.requests),
            sysUsPerConn: ds.map((t) => (t * TICK_S * 1e6) / r.requests), hostUsPerConn: (dh * TICK_S * 1e6) / r.requests, load: loadavg()[0]! });
        }
        rounds(contender.name, rs, contender === weft ? ['n1 agent', 'n2 agent'] : ['n2 haproxy', 'n1 haproxy']);
      } finally {
        await ep.stop();
      }
    }
  });
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
