/**
 * The cost of one new connection through the Weft node proxies (issue 11 point 1,
 * docs/new-connections.md): client pod on n1, server pod on n2, `wrk -H 'Connection: close'`
 * (one TCP connection per request) for WRK_SECONDS, WEFT_NC_ROUNDS times (default 3). For each
 * round: req/s, and each agent's user+system CPU per connection from /proc/<pid>/stat (steadier
 * than req/s on a shared host). WEFT_NC_HAPROXY=1 runs the HAProxy pair the same way first, for
 * the ratio. WEFT_BENCH_AGENT_FLAGS='--cpu-prof --cpu-prof-dir=DIR' profiles the agents.
 * WEFT_BENCH_LAB names the lab (default wnc1).
 *
 * The warm-up and each round connect from a client pod of their own (same namespace): a client that
 * closes first keeps each connection's port in TIME_WAIT for 60 s, so a round run from the client of
 * the round before measured that client's search for a free port, not the proxies (rounds after the
 * first fell to 430-490 connections/s for Weft, docs/new-connections.md).
 */

import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { cpuTicks, HTTP_SERVER, TICK_S, WRK_SECONDS, wrk } from './load';
import { withHopLab } from './hop-lab';
import { haproxyPair, weft } from './mtls-hop';

const IDLE_MS = 5_000;
const ROUNDS = Math.max(1, Math.min(20, Number(process.env.WEFT_NC_ROUNDS ?? 3)));

interface Round { rps: number; requests: number; failed: number; usPerConn: number[]; netUsPerConn: number[]; load: number }

function rounds(name: string, rs: Round[], labels: string[]): void {
  for (const [i, r] of rs.entries()) {
    const per = r.usPerConn.map((u, j) => `${labels[j] ?? `p${j}`} ${u.toFixed(1)}`).join(', ');
    const sum = (v: number[]) => v.reduce((a, b) => a + b, 0).toFixed(1);
    console.log(`${name.padEnd(13)} round ${i + 1}: ${r.rps.toFixed(0)} conn/s (${r.requests} conns, ${r.failed} failed), CPU µs/conn: ${per}, sum ${sum(r.usPerConn)}`
      + ` (less idle: ${sum(r.netUsPerConn)}); load ${r.load.toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  await withHopLab({ name: process.env.WEFT_BENCH_LAB ?? 'wnc1', client: { namespace: 'bench' }, server: { namespace: 'bench' }, serverScript: HTTP_SERVER }, async (c) => {
    // Made before the mesh starts, which enrolls the pods the lab has then.
    const roundClients = [];
    for (let i = 0; i < ROUNDS; i++) roundClients.push(await c.n1.pod(`client-r${i + 1}`, { namespace: 'bench' }));
    const contenders = process.env.WEFT_NC_HAPROXY === '1' ? [haproxyPair, weft] : [weft];
    for (const contender of contenders) {
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
          // WEFT_NC_PERF=DIR: the kernel side too, perf record -g of each agent during the first round
          const perfDir = process.env.WEFT_NC_PERF;
          const perfs = perfDir && i === 0 ? pids.map((p, j) => spawn('perf', ['record', '-q', '-F', '499', '-g', '-p', String(p), '-o', `${perfDir}/perf-${j}.data`, '--', 'sleep', String(WRK_SECONDS)], { stdio: 'ignore' })) : [];
          const began = performance.now();
          const r = await wrk(roundClients[i]!, url, ['-H', 'Connection: close']);
          const dt = pids.map((p, j) => cpuTicks([p]) - t0[j]!);
          await Promise.all(perfs.map((p) => new Promise((res) => { if (p.exitCode !== null) res(null); else { p.once('exit', res); setTimeout(() => { p.kill('SIGINT'); }, 10_000).unref(); } })));
          const seconds = (performance.now() - began) / 1000;
          rs.push({ rps: r.rps, requests: r.requests, failed: r.failed, usPerConn: dt.map((t) => (t * TICK_S * 1e6) / r.requests),
            netUsPerConn: dt.map((t, j) => (t * TICK_S * 1e6 - idleUsPerS[j]! * seconds) / r.requests), load: loadavg()[0]! });
        }
        rounds(contender.name, rs, contender === weft ? ['n1 agent', 'n2 agent'] : ['n2 haproxy', 'n1 haproxy']);
      } finally {
        await ep.stop();
      }
    }
  });
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
