/**
 * The fixed-rate tail-latency benchmark alone (`npm run bench` runs it inside mtls-hop.js):
 * measures the HAProxy pair closed-loop (wrk) for the rate, then each contender at fixed rates.
 *
 *   node dist/test/bench/fixed-rate.js [--rounds N] [--probe DIR] [--stunnel] [--lab NAME]
 *
 * --probe DIR preloads fixed-rate-probe.js into Weft's agents and lines up the slowest requests
 * with their GC pauses and event-loop stalls. Rounds reuse the first round's rate.
 */
import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { withHopLab } from './hop-lab';
import { HTTP_SERVER, wrk } from './load';
import { direct, haproxyPair, stunnelPair, weft } from './mtls-hop';
import { DEFAULT_FIXED_RATE, fixedRatePhase, printFixedRate } from './fixed-rate-phase';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '1' }, probe: { type: 'string' }, stunnel: { type: 'boolean', default: false }, lab: { type: 'string', default: 'wtail' } } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) throw new Error(`--rounds: expected an integer from 1 to 10, got '${values.rounds}'`);
  if (values.probe) mkdirSync(values.probe, { recursive: true });
  await withHopLab({ name: values.lab!, client: { namespace: 'bench' }, server: { namespace: 'bench' }, serverScript: HTTP_SERVER }, async (ctx) => {
    const ha = await haproxyPair.start(ctx);
    let haRps: number;
    try {
      haRps = (await wrk(ctx.client, `http://${ha.host}:${ha.port}/`, [])).rps;
    } finally {
      await ha.stop();
    }
    const contenders = values.stunnel ? [direct, stunnelPair, haproxyPair, weft] : [direct, haproxyPair, weft];
    for (let round = 1; round <= rounds; round++) {
      const rows = await fixedRatePhase(ctx, contenders, haRps, { ...DEFAULT_FIXED_RATE, ...(values.probe ? { probeDir: values.probe } : {}) });
      console.log(`\n# round ${round} of ${rounds}`);
      printFixedRate(rows, haRps);
    }
  });
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
