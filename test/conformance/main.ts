/**
 * `npm run conformance`: the Gateway API mesh conformance suite against Weft on a netns lab.
 *
 *   node dist/test/conformance/main.js [--test ShortName]... [--keep] [--report FILE]
 *                                      [--full-wait | --settle MS] [--verbose]
 *
 * --report FILE (or WEFT_CONFORMANCE_REPORT) writes the report as JSON. Exits 1 when a claimed test
 * fails (known exceptions aside), 2 on bad usage or when the lab cannot be built.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UPSTREAM_RULE } from './convergence';
import { formatReport } from './report';
import { DEFAULT_SETTLE_MS } from './runner';
import { runConformance } from './suite';

const USAGE = `usage: node dist/test/conformance/main.js [--test ShortName]... [--keep] [--report FILE] [--full-wait | --settle MS] [--verbose]
  --test NAME   run only this test (repeatable; comma-separated also works); the others are reported as not selected
  --keep        leave the lab up after the run (Ctrl-C tears it down) and print how to reach it
  --report FILE write the report as JSON (default: $WEFT_CONFORMANCE_REPORT, else none)
  --full-wait   upstream's timing exactly: every failing case polls for 30 s, weighted cases retry 10 batches
  --settle MS   once a test's routes are in force on every agent, how long a case may still take to pass (default ${DEFAULT_SETTLE_MS})
  --verbose     list every case, not only the failing ones`;

async function main(): Promise<number> {
  let f;
  try {
    f = parseArgs({
      options: {
        test: { type: 'string', multiple: true }, keep: { type: 'boolean' }, report: { type: 'string' },
        'full-wait': { type: 'boolean' }, settle: { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
      strict: true, allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (f.help) { console.log(USAGE); return 0; }
  const settle = f['full-wait'] ? null : f.settle !== undefined ? Number(f.settle) : DEFAULT_SETTLE_MS;
  if (settle !== null && (!Number.isFinite(settle) || settle < 0)) {
    process.stderr.write(`--settle ${f.settle}: not a number of milliseconds\n`);
    return 2;
  }
  const reportPath = f.report ?? process.env.WEFT_CONFORMANCE_REPORT;
  const only = (f.test ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  let report;
  try {
    report = await runConformance({
      only,
      rule: { ...UPSTREAM_RULE, settleMs: settle },
      keep: !!f.keep,
      onKept: async (lab) => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) {
          process.once(sig, () => { void lab.close().catch((e: Error) => process.stderr.write(`${e.message}\n`)).finally(() => process.exit(process.exitCode ?? 0)); });
        }
        console.log(`\n--keep: the lab stays up while this process runs.\n${lab.describe()}\nTear it down: press Ctrl-C here (or kill -INT ${process.pid}); the lab and its agents go with this process.\n`);
      },
    });
  } catch (e) {
    process.stderr.write(`conformance: ${(e as Error).stack ?? e}\n`);
    return 2;
  }
  console.log(formatReport(report, { verbose: !!f.verbose }));
  if (reportPath) {
    writeFileSync(reportPath, JSON.stringify(report, null, 2) + '\n');
    console.log(`report written to ${reportPath}`);
  }
  const code = report.unexpectedFailures.length ? 1 : 0;
  if (f.keep) {
    // Stay alive (the lab lives as long as this process); SIGINT/SIGTERM close it through the lab's exit hooks.
    process.exitCode = code;
    setInterval(() => undefined, 1 << 30);
    return new Promise<number>(() => undefined);
  }
  return code;
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`conformance: ${e.stack ?? e.message}\n`);
  process.exit(2);
});
