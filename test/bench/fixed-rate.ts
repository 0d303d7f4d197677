/**
 * The fixed-rate tail-latency benchmark alone (`npm run bench` runs it inside mtls-hop.js):
 * measures the HAProxy pair closed-loop (wrk) for the rate, then each contender at fixed rates.
 *
 *   node dist/test/bench/fixed-rate.js [--rounds N] [--probe DIR] [--stunnel] [--lab NAME] [--only NAME,...] [--haproxy-rps N]
 *
 * --probe DIR preloads fixed-rate-probe.js into Weft's agents and lines up the slowest requests
 * with their GC pauses and event-loop stalls. Rounds reuse the first round's rate. --only keeps
 * the contenders named (direct, haproxy, weft, stunnel); --haproxy-rps skips the closed-loop run
 * and takes that rate as the HAProxy pair's (to compare agent flags at one rate across runs).
 */
import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { withHopLab } from './hop-lab';
import { HTTP_SERVER, wrk } from './load';
import { direct, haproxyPair, stunnelPair, weft } from './mtls-hop';
import { DEFAULT_FIXED_RATE, fixedRatePhase, printFixedRate } from './fixed-rate-phase';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '1' }, probe: { type: 'string' }, stunnel: { type: 'boolean', default: false }, lab: { type: 'string', default: 'wtail' },
    only: { type: 'string' }, 'haproxy-rps': { type: 'string' } } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) throw new Error(`--rounds: expected an integer from 1 to 10, got '${values.rounds}'`);
  if (values.probe) mkdirSync(values.probe, { recursive: true });
  await withHopLab({ name: values.lab!, client: { namespace: 'bench' }, server: { namespace: 'bench' }, serverScript: HTTP_SERVER }, async (ctx) => {
    let haRps = Number(values['haproxy-rps'] ?? NaN);
    if (values['haproxy-rps'] !== undefined && !(haRps > 0)) throw new Error(`--haproxy-rps: expected a rate > 0, got '${values['haproxy-rps']}'`);
    if (values['haproxy-rps'] === undefined) {
      const ha = await haproxyPair.start(ctx);
      try {
        haRps = (await wrk(ctx.client, `http://${ha.host}:${ha.port}/`, [])).rps;
      } finally {
        await ha.stop();
      }
    }
    const byKey = { direct, stunnel: stunnelPair, haproxy: haproxyPair, weft };
    const keys = values.only ? values.only.split(',') : values.stunnel ? ['direct', 'stunnel', 'haproxy', 'weft'] : ['direct', 'haproxy', 'weft'];
    const contenders = keys.map((k) => {
      const c = byKey[k as keyof typeof byKey];
      if (!c) throw new Error(`--only: unknown contender '${k}' (direct, haproxy, weft, stunnel)`);
      return c;
    });
    for (let round = 1; round <= rounds; round++) {
      const rows = await fixedRatePhase(ctx, contenders, haRps, { ...DEFAULT_FIXED_RATE, ...(values.probe ? { probeDir: values.probe } : {}) });
      console.log(`\n# round ${round} of ${rounds}`);
      printFixedRate(rows, haRps);
    }
  });
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
